"""Agent enrolment: one-time registration tokens and their exchange for an agent credential."""
