"""The screens. One module per screen: its layout is a function, its callbacks are registered with
`dashboard.declarations.callback` (Dash's, with who may run it), its component ids start with the
screen's name, and it declares itself once (`PAGE = page(path, label, roles, layout, …)`). The
shell imports every module of this package and builds routes and navigation from those
declarations alone: adding a screen is adding its module here."""
