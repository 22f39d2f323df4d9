"""One module per PET phase: `enter`/`run` stage functions, `handle` for message phases,
`finish` for the work done when the phase's time and count conditions are met."""
