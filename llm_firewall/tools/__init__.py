"""What runs around the firewall rather than in it: the command line, the embedded demo model,
the attack scenarios and the evaluation of detection on labelled corpora."""
