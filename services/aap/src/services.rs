//! Which of the platform's services one process runs: `aap serve` runs them all by default, and
//! `aap serve --services answers,ingest` (or `AAP_SERVICES`) any subset, so that each can be
//! deployed and scaled on its own. Any number of processes may run any service at once against
//! one PostgreSQL and one NATS.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// One of the platform's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// AnswersService: Ask and Watch (loads the embedding model).
    Answers,
    /// SessionService and RemoteLoginService: the assistant accounts and their logins.
    Sessions,
    /// EvaluationService and the seed's HTTP polling API: what bots call.
    Evaluations,
    /// Moves pending evaluations onto the task stream, ends lapsed claims, expires waits.
    Scheduler,
    /// Stores submitted answers from the results stream (one durable consumer shared by every
    /// replica).
    Ingest,
    /// The operators' web console and its gRPC-web.
    Console,
}

impl Service {
    /// Every service, in the order they are listed.
    pub const ALL: [Service; 6] = [
        Service::Answers,
        Service::Sessions,
        Service::Evaluations,
        Service::Scheduler,
        Service::Ingest,
        Service::Console,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Service::Answers => "answers",
            Service::Sessions => "sessions",
            Service::Evaluations => "evaluations",
            Service::Scheduler => "scheduler",
            Service::Ingest => "ingest",
            Service::Console => "console",
        }
    }

    /// The names under which `grpc.health.v1` reports this service: its gRPC services, or
    /// `aap.<name>` for a service without one.
    pub fn health_names(self) -> &'static [&'static str] {
        match self {
            Service::Answers => &["aap.v1.AnswersService"],
            Service::Sessions => &["aap.v1.SessionService", "aap.v1.RemoteLoginService"],
            Service::Evaluations => &["aap.v1.EvaluationService"],
            Service::Scheduler => &["aap.scheduler"],
            Service::Ingest => &["aap.ingest"],
            Service::Console => &["aap.console"],
        }
    }

    /// Whether the service talks to NATS (the others need PostgreSQL alone).
    pub fn uses_nats(self) -> bool {
        matches!(self, Service::Answers | Service::Evaluations | Service::Scheduler | Service::Ingest)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of services; `all` (the default) is every one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services(BTreeSet<Service>);

impl Default for Services {
    fn default() -> Services {
        Services::all()
    }
}

impl Services {
    /// Every service: the whole platform in one process.
    pub fn all() -> Services {
        Services(Service::ALL.into_iter().collect())
    }

    /// Exactly these services.
    pub fn only(services: impl IntoIterator<Item = Service>) -> Services {
        Services(services.into_iter().collect())
    }

    /// Whether `service` runs in this process.
    pub fn runs(&self, service: Service) -> bool {
        self.0.contains(&service)
    }

    /// Whether this process runs every service.
    pub fn is_all(&self) -> bool {
        self.0.len() == Service::ALL.len()
    }

    /// The services, in order.
    pub fn iter(&self) -> impl Iterator<Item = Service> + '_ {
        self.0.iter().copied()
    }

    /// Whether any service here needs NATS.
    pub fn uses_nats(&self) -> bool {
        self.iter().any(Service::uses_nats)
    }
}

impl fmt::Display for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("all");
        }
        let names: Vec<&str> = self.iter().map(Service::name).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for Services {
    type Err = String;

    /// `all`, or a comma-separated list of service names (spaces allowed, repeats ignored).
    fn from_str(text: &str) -> Result<Services, String> {
        let mut set = BTreeSet::new();
        for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            if name.eq_ignore_ascii_case("all") {
                set.extend(Service::ALL);
                continue;
            }
            let service = Service::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
                let known: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
                format!("unknown service {name:?}; the services are all, {}", known.join(", "))
            })?;
            set.insert(service);
        }
        if set.is_empty() {
            return Err(format!("no service named; the services are all, {}", Services::all()));
        }
        Ok(Services(set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_names_a_subset_and_all_names_every_service() {
        let some: Services = "answers, ingest,answers".parse().expect("a list");
        assert!(some.runs(Service::Answers) && some.runs(Service::Ingest));
        assert!(!some.runs(Service::Scheduler) && !some.is_all());
        assert_eq!(some.to_string(), "answers,ingest");
        let all: Services = "all".parse().expect("all");
        assert_eq!(all, Services::all());
        assert_eq!(all.to_string(), "all");
        assert_eq!("Scheduler".parse::<Services>().expect("any case"), Services::only([Service::Scheduler]));
    }

    #[test]
    fn an_unknown_or_empty_list_is_refused_naming_the_services() {
        let error = "answers,bots".parse::<Services>().expect_err("bots is no service");
        assert!(error.contains("\"bots\"") && error.contains("scheduler"), "{error}");
        assert!(" , ".parse::<Services>().expect_err("empty").contains("no service"));
    }

    #[test]
    fn only_the_services_that_need_nats_make_a_process_connect_to_it() {
        assert!(!Services::only([Service::Sessions, Service::Console]).uses_nats());
        assert!(Services::only([Service::Sessions, Service::Ingest]).uses_nats());
    }
}
