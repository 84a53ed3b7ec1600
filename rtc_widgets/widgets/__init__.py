"""Widget classes; import them from :mod:`rtc_widgets`."""
