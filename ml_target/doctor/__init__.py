"""`doctor`: the first run on a card, checked (see `ml_target.doctor.command`)."""
