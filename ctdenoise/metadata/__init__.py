"""ML Metadata in one place, below the command line and the pipeline: the names a run is recorded
under and the run root's layout (`names`), the store's address (`store`), queries (`queries`),
recovery of a killed run's executions (`recovery`), progress lines (`progress`), the run summary
(`summary`) and lineage (`lineage`)."""
