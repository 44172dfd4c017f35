"""What operators watch: backlogs, held drafts, the close and the scheduled tasks, read at once."""
