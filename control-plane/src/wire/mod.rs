//! The JSON shapes of the HTTP API, shared by the server and the CLI.

mod access;
mod deliveries;
mod errors;
mod events;
mod executions;
mod functions;
mod health;
mod logs;
mod nodes;

pub use access::{
    CreateTokenRequest, CreatedToken, PutSecretRequest, SecretList, SecretMeta, TokenInfo,
    TokenList,
};
pub use deliveries::{DeliveryInfo, DeliveryPage, DeliveryQuery, DestinationKey, ExecutionDetail};
pub use errors::{ErrorBody, ErrorDetail, RedrivenDetails};
pub use events::{EventAnswer, EventRequest, EventTarget};
pub use executions::{
    Accepted, ChainNode, ChainPage, ChainQuery, CompletionAnswer, ExecutionPage, ExecutionQuery,
    InvokeAnswer, ListedExecution, RetryAnswer,
};
pub use functions::{
    FunctionAnswer, FunctionList, InstanceState, InstanceStatus, PoolStatus, ScaleRequest,
    ScheduleStatus, SpecSummary, VersionList, WarmLimits,
};
pub use health::{Health, HealthStatus};
pub use logs::{FunctionLogsQuery, InstanceLogPage, LogEnd, LogPage, LogsQuery};
pub use nodes::{NodeInfo, NodeList};
