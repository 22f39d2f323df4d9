"""`xaynet test-drive`: N participants complete private rounds against a coordinator, and each
global model is checked against the plain mean of the models that round aggregated."""
