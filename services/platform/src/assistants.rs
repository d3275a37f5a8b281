//! The assistants the platform serves, their ids and the names the seed's HTTP API uses.

/// One assistant the fleet can ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Assistant {
    /// Lowercase id used in the gRPC API, subjects and the database.
    pub id: &'static str,
    /// The name the seed's HTTP API and bots use, e.g. "ChatGPT".
    pub seed_name: &'static str,
    /// The registrable domains its logged-in session lives on (cookies of these, or of their
    /// subdomains, are its session).
    pub session_domains: &'static [&'static str],
}

impl Assistant {
    /// Whether a cookie domain (`.chatgpt.com`, `auth.openai.com`) is one of its session's.
    pub fn owns_cookie_domain(&self, domain: &str) -> bool {
        let domain = domain.trim().trim_start_matches('.').to_ascii_lowercase();
        self.session_domains
            .iter()
            .any(|own| domain == *own || domain.strip_suffix(own).is_some_and(|head| head.ends_with('.')))
    }
}

/// Every assistant the platform serves, in the order answers are listed.
pub const ASSISTANTS: &[Assistant] = &[
    Assistant { id: "chatgpt", seed_name: "ChatGPT", session_domains: &["chatgpt.com", "openai.com"] },
    Assistant { id: "claude", seed_name: "Claude", session_domains: &["claude.ai", "anthropic.com"] },
    Assistant { id: "perplexity", seed_name: "Perplexity", session_domains: &["perplexity.ai"] },
    Assistant { id: "google-ai-overview", seed_name: "Google AI Overview", session_domains: &["google.com"] },
];

/// The plan a target names when it names none: any bot of the assistant may take it.
pub const ANY_PLAN: &str = "any";

/// Finds an assistant by its lowercase id.
pub fn by_id(id: &str) -> Option<Assistant> {
    ASSISTANTS.iter().copied().find(|a| a.id == id)
}

/// Finds an assistant by the seed's name ("ChatGPT") or by id, ignoring case.
pub fn by_seed_name(name: &str) -> Option<Assistant> {
    let name = name.trim();
    ASSISTANTS.iter().copied().find(|a| a.seed_name.eq_ignore_ascii_case(name) || a.id.eq_ignore_ascii_case(name))
}

/// The canonical spelling of a plan: trimmed, lowercase; empty becomes [`ANY_PLAN`].
///
/// Plans are compared in this form everywhere ("Plus" and "plus" are one plan).
pub fn normalize_plan(plan: &str) -> String {
    let plan = plan.trim().to_lowercase();
    if plan.is_empty() { ANY_PLAN.to_owned() } else { plan }
}

/// A plan as one NATS subject token: characters other than ASCII alphanumerics and '-' become '_'.
pub fn plan_token(plan: &str) -> String {
    normalize_plan(plan).chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_names_map_to_ids_ignoring_case() {
        assert_eq!(by_seed_name("ChatGPT").map(|a| a.id), Some("chatgpt"));
        assert_eq!(by_seed_name("google ai overview").map(|a| a.id), Some("google-ai-overview"));
        assert_eq!(by_seed_name("chatgpt").map(|a| a.id), Some("chatgpt"));
        assert_eq!(by_seed_name("Bard"), None);
    }

    #[test]
    fn plans_normalise_to_one_spelling_and_a_safe_token() {
        assert_eq!(normalize_plan(" Plus "), "plus");
        assert_eq!(normalize_plan(""), ANY_PLAN);
        assert_eq!(plan_token("Team Pro.1"), "team_pro_1");
    }
}
