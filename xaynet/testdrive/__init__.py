"""`xaynet test-drive`: N participants complete private rounds against a coordinator, and each
global model is checked against the mean (with `--task digits`: the mean weighted by the
participants' scalars) of the models that round aggregated."""
