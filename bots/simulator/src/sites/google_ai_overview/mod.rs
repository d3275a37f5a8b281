//! Placeholder: replaced by the site's look-alike.

use axum::Router;
use axum::http::StatusCode;

use crate::state::SimState;

/// The site's routes.
pub(crate) fn routes() -> Router<SimState> {
    Router::new().fallback(|| async { StatusCode::NOT_FOUND })
}
