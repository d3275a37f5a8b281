//! Local real components (written by the infra helper).
