//! One module per imitated site. Each exposes `routes()`: its pages and answer endpoints, with
//! the quirks bots must handle on the real site.

pub(crate) mod chatgpt;
pub(crate) mod claude;
pub(crate) mod google_ai_overview;
pub(crate) mod perplexity;

use axum::Router;

pub use chatgpt::{
    ANSWER_NOW_EVENT as CHATGPT_ANSWER_NOW_EVENT, PREFERRED_EVENTS as CHATGPT_PREFERRED_EVENTS,
    TEMPORARY_CHAT_EVENT as CHATGPT_TEMPORARY_CHAT_EVENT, is_shopping as chatgpt_is_shopping,
    more_sources as chatgpt_more_sources, products as chatgpt_products, search_queries as chatgpt_search_queries,
};
pub use chatgpt::{GENERIC_ERROR_MESSAGE, RATE_LIMIT_MESSAGE};
pub use claude::INCOGNITO_CHAT_EVENT as CLAUDE_INCOGNITO_CHAT_EVENT;
pub use perplexity::{
    ERROR_MESSAGE as PERPLEXITY_ERROR_MESSAGE, RATE_LIMIT_MESSAGE as PERPLEXITY_RATE_LIMIT_MESSAGE,
    ShoppingProduct as PerplexityProduct, listed_sources as perplexity_listed_sources, products as perplexity_products,
    search_queries as perplexity_search_queries,
};

use crate::site::Site;
use crate::state::SimState;

/// The routes of `site`.
pub(crate) fn routes(site: Site) -> Router<SimState> {
    match site {
        Site::ChatGpt => chatgpt::routes(),
        Site::Claude => claude::routes(),
        Site::Perplexity => perplexity::routes(),
        Site::GoogleAiOverview => google_ai_overview::routes(),
    }
}
