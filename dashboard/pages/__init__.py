"""One module per screen: its layout is a function, its callbacks are registered with
dash.callback, its component ids start with the screen's name."""
