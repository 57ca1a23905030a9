"""The Gradio demo app (``captioner app``): the server, its tabs and handlers, and the guards on requests."""
