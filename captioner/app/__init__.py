"""The Gradio demo app (``captioner app``): the server, its page and handlers, the Look inside plots, and the guards
on requests."""
