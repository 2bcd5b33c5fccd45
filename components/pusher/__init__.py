"""The Pusher component: TFX's Pusher, made atomic: a pushed version appears whole or not at all."""
