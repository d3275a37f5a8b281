//! What the chaos run (`aap-chaos`) and the load benchmark (`aap-load`) share: restartable
//! child processes and the platform as they start it on this machine.

pub mod proc;
pub mod stack;
