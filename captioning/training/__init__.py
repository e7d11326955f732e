"""The training library both products use: typed configuration (`options`), the run's training state
and atomic checkpoint folders (`state`), processes and devices (`distributed`), and the `Trainer`
loop with its hooks (`trainer`)."""
