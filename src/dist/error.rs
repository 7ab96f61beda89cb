use thiserror::Error;

#[derive(Debug, Error)]
pub enum DistError {
    /// The launcher's environment is incomplete or inconsistent.
    #[error("distributed launch: {0}")]
    Launch(String),
    /// Rendezvous (TCPStore) or process-group creation failed: a rank did not join in time, the
    /// master address is unreachable, GLOO_SOCKET_IFNAME names no interface...
    #[error("rank {rank}/{world}: could not join the process group at {master}: {message}")]
    Init { rank: usize, world: usize, master: String, message: String },
    /// A collective failed: a peer died (connection reset) or did not arrive within the timeout.
    #[error("rank {rank}/{world}: {op} failed: {message}")]
    Collective { rank: usize, world: usize, op: &'static str, message: String },
    #[error("{op}: {message}")]
    Usage { op: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, DistError>;
