"""Everything that runs on the local machine: the warm worker pool and its job lifecycle."""
