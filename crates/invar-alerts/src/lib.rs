//! invar-alerts (in progress).
