//! The live registry: validates manifests, writes versions to the store and keeps the
//! current versions, and a bounded number of older ones, with their compiled schemas in
//! memory, so an invocation reads no disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use serde_json::Value;

use super::manifest::{self, FunctionSpec};
use super::{content_hash, FunctionVersion};
use crate::destinations::function_key;
use crate::runtime::Runtime;
use crate::schema::CompiledSchema;
use crate::secrets::{Vault, VaultError};
use crate::store::{Store, StoreError};

/// A function version ready to run: its definition and compiled schemas.
#[derive(Debug)]
pub struct LoadedFunction {
    /// The stored version.
    pub version: Arc<FunctionVersion>,
    /// Compiled `input_schema`.
    pub input_schema: Option<CompiledSchema>,
    /// Compiled `output_schema`.
    pub output_schema: Option<CompiledSchema>,
}

impl LoadedFunction {
    /// A version with its schemas compiled; the problems if they do not compile.
    pub fn load(version: FunctionVersion) -> Result<LoadedFunction, Vec<String>> {
        let mut problems = Vec::new();
        let mut compile = |field: &str, schema: &Option<Value>| match schema {
            Some(schema) => CompiledSchema::compile(field, schema)
                .map_err(|problem| problems.push(problem))
                .ok(),
            None => None,
        };
        let input_schema = compile("input_schema", &version.spec.input_schema);
        let output_schema = compile("output_schema", &version.spec.output_schema);
        if problems.is_empty() {
            Ok(LoadedFunction {
                version: Arc::new(version),
                input_schema,
                output_schema,
            })
        } else {
            Err(problems)
        }
    }

    /// The definition.
    pub fn spec(&self) -> &FunctionSpec {
        &self.version.spec
    }
}

/// What registry operations fail with.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The manifest is not valid; every problem is listed.
    #[error("invalid function definition: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// No function with this name.
    #[error("function {0:?} not found")]
    NotFound(String),
    /// Version `1` of … does not exist.
    #[error("function {0:?} has no version {1}")]
    VersionNotFound(String, u32),
    /// A function with this name already exists.
    #[error("function {0:?} already exists; replace it with PUT /v1/functions/{0}")]
    Exists(String),
    /// The name in the body differs from the one in the path.
    #[error("the manifest names {body:?} but the path names {path:?}")]
    NameMismatch {
        /// Name in the path.
        path: String,
        /// Name in the body.
        body: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Versions kept loaded (with their compiled schemas) besides the current ones.
pub const MAX_CACHED_VERSIONS: usize = 1024;

/// Chains a function may have unless the server says otherwise.
pub const DEFAULT_MAX_CHAINS: usize = 16;

/// The checks of a manifest that need no server state: its fields, at most
/// `max_chains` chains, and its schemas. Every problem found is listed.
pub fn check_definition(manifest: &Value, max_chains: usize) -> Result<FunctionSpec, Vec<String>> {
    let spec = manifest::from_json(manifest).map_err(|err| vec![err])?;
    let mut problems = manifest::problems(&spec);
    if spec.chains.len() > max_chains {
        problems.push(format!(
            "chains: {} chains, at most {max_chains} per function (the server's --max-chains): each finished execution would start that many",
            spec.chains.len(),
        ));
    }
    for (field, schema) in [
        ("input_schema", &spec.input_schema),
        ("output_schema", &spec.output_schema),
    ] {
        if let Some(schema) = schema {
            match CompiledSchema::compile(field, schema) {
                Ok(compiled) if field == "input_schema" => {
                    problems.extend(crate::schedule::input_problems(&spec.schedules, &compiled));
                }
                Ok(_) => {}
                Err(problem) => problems.push(problem),
            }
        }
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(problems)
    }
}

/// Function definitions: validated, stored, cached.
pub struct Catalog {
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    vault: Arc<Vault>,
    max_chains: usize,
    destination_policy: crate::destinations::AddressPolicy,
    current: DashMap<String, Arc<LoadedFunction>>,
    versions: DashMap<(String, u32), Arc<LoadedFunction>>,
    /// How many times the current versions were forgotten: a version read from the
    /// store while this moved may predate the change that made them be forgotten.
    forgotten: AtomicU64,
}

impl Catalog {
    /// A catalog over `store`, checking definitions against what `runtime` can run and
    /// their `secrets` against `vault`.
    pub fn new(store: Arc<dyn Store>, runtime: Arc<dyn Runtime>, vault: Arc<Vault>) -> Catalog {
        Catalog {
            store,
            runtime,
            vault,
            max_chains: DEFAULT_MAX_CHAINS,
            destination_policy: crate::destinations::AddressPolicy::default(),
            current: DashMap::new(),
            versions: DashMap::new(),
            forgotten: AtomicU64::new(0),
        }
    }

    /// The same catalog, accepting at most `max` chains per function.
    pub fn with_max_chains(mut self, max: usize) -> Catalog {
        self.max_chains = max;
        self
    }

    /// The same catalog, checking destination addresses against `policy`.
    pub fn with_destination_policy(
        mut self,
        policy: crate::destinations::AddressPolicy,
    ) -> Catalog {
        self.destination_policy = policy;
        self
    }

    /// Which destination addresses the server allows.
    pub fn destination_policy(&self) -> crate::destinations::AddressPolicy {
        self.destination_policy
    }

    /// Parses and checks a manifest given as JSON. Whether its chains' targets are
    /// deployed is checked by [`Catalog::create`] and [`Catalog::replace`].
    pub fn validate(&self, manifest: Value) -> Result<FunctionSpec, RegistryError> {
        let spec = check_definition(&manifest, self.max_chains).map_err(RegistryError::Invalid)?;
        let problems = self.runtime.problems(&spec);
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(RegistryError::Invalid(problems))
        }
    }

    /// [`Catalog::validate`], then the chains' targets: each must be a deployed function
    /// or the function itself (a self-chain is stopped by the depth cap at run time); and
    /// each secret the function maps must be stored.
    async fn validate_deploy(&self, manifest: Value) -> Result<FunctionSpec, RegistryError> {
        let spec = self.validate(manifest)?;
        let mut problems = self.unknown_secrets(&spec).await?;
        problems.extend(self.destination_problems(&spec).await?);
        for (index, chain) in spec.chains.iter().enumerate() {
            if chain.target == spec.name {
                continue;
            }
            match self.current(&chain.target).await {
                // A stored version that no longer loads is still a deployed function.
                Ok(_) | Err(RegistryError::Invalid(_)) => {}
                Err(RegistryError::NotFound(_)) => problems.push(format!(
                    "chains[{index}].target {:?} is not a deployed function",
                    chain.target
                )),
                Err(other) => return Err(other),
            }
        }
        if problems.is_empty() {
            Ok(spec)
        } else {
            Err(RegistryError::Invalid(problems))
        }
    }

    async fn unknown_secrets(&self, spec: &FunctionSpec) -> Result<Vec<String>, RegistryError> {
        let names = spec.secrets.values().map(|reference| reference.secret());
        let missing = self.vault.missing(names).await.map_err(|err| match err {
            VaultError::Store(err) => RegistryError::Store(err),
            other => RegistryError::Invalid(vec![other.to_string()]),
        })?;
        Ok(spec
            .secrets
            .iter()
            .filter(|(_, reference)| missing.iter().any(|name| name == reference.secret()))
            .map(|(var, reference)| {
                format!(
                    "secrets.{var}: no secret named {:?} is stored; set it first with `gantry secret set {}`",
                    reference.secret(),
                    reference.secret()
                )
            })
            .collect())
    }

    /// The destination URLs' addresses under the server's policy, and the signing
    /// secret, which must be stored.
    async fn destination_problems(
        &self,
        spec: &FunctionSpec,
    ) -> Result<Vec<String>, RegistryError> {
        let Some(destinations) = &spec.destinations else {
            return Ok(Vec::new());
        };
        let mut problems = destinations.address_problems(self.destination_policy);
        if let Some(secret) = &destinations.secret {
            let missing = self
                .vault
                .missing([secret.as_str()])
                .await
                .map_err(|err| match err {
                    VaultError::Store(err) => RegistryError::Store(err),
                    other => RegistryError::Invalid(vec![other.to_string()]),
                })?;
            if !missing.is_empty() {
                problems.push(format!(
                    "destinations.secret: no secret named {secret:?} is stored; set it first with `gantry secret set {secret}`"
                ));
            }
        }
        Ok(problems)
    }

    /// Where the current versions' cache stands: taken before reading or writing a
    /// current version in the store, then handed to [`Catalog::remember`].
    pub(super) fn cache_epoch(&self) -> u64 {
        self.forgotten.load(Ordering::SeqCst)
    }

    /// Loads `version`, the current one of its function when the store was read or
    /// written after `epoch`, and caches it as current, unless the cache holds a newer
    /// version (a concurrent deploy's, answered first) or was forgotten since `epoch`: the
    /// version may then be older than the change that was seen, and the next use reads
    /// the store again instead.
    pub(super) fn remember(
        &self,
        version: FunctionVersion,
        epoch: u64,
    ) -> Result<Arc<LoadedFunction>, RegistryError> {
        let loaded = Arc::new(LoadedFunction::load(version).map_err(RegistryError::Invalid)?);
        let name = loaded.version.name.clone();
        self.cache_version(loaded.clone());
        match self.current.entry(name.clone()) {
            // Version numbers of a name only grow.
            Entry::Occupied(cached) if cached.get().version.version > loaded.version.version => {}
            Entry::Occupied(mut cached) => {
                cached.insert(loaded.clone());
            }
            Entry::Vacant(vacant) => {
                vacant.insert(loaded.clone());
            }
        }
        // Checked after the insert: a forget that comes later clears it anyway.
        if self.cache_epoch() != epoch {
            self.current
                .remove_if(&name, |_, cached| Arc::ptr_eq(cached, &loaded));
        }
        Ok(loaded)
    }

    /// Keeps `loaded` for its executions; the cache of old versions is bounded (past
    /// [`MAX_CACHED_VERSIONS`] it starts over, and versions load again from the store).
    fn cache_version(&self, loaded: Arc<LoadedFunction>) {
        if self.versions.len() >= MAX_CACHED_VERSIONS {
            self.versions.clear();
        }
        let key = (loaded.version.name.clone(), loaded.version.version);
        self.versions.insert(key, loaded);
    }

    /// Settings of `spec` the runtime accepts but does not apply.
    pub fn ignored(&self, spec: &FunctionSpec) -> Vec<String> {
        let mut ignored = self.runtime.ignored(spec);
        ignored.extend(super::secret_ref::plain_env_warnings(&spec.env));
        ignored
    }

    /// Creates a function from a manifest.
    pub async fn create(&self, manifest: Value) -> Result<Arc<LoadedFunction>, RegistryError> {
        let spec = self.validate_deploy(manifest).await?;
        let hash = content_hash(&spec);
        let epoch = self.cache_epoch();
        let stored = self
            .store
            .create_function(&spec, &hash)
            .await
            .map_err(|err| match err {
                StoreError::FunctionExists(name) => RegistryError::Exists(name),
                other => RegistryError::Store(other),
            })?;
        // Its delivery key exists before any of its results is signed, so no two nodes
        // race to make it.
        if let Err(err) = function_key(&self.store, &self.vault, &spec.name).await {
            tracing::warn!(function = %spec.name, "cannot make the destination key yet: {err}");
        }
        self.remember(stored, epoch)
    }

    /// Replaces the function `name`; answers the current version and whether it changed.
    pub async fn replace(
        &self,
        name: &str,
        manifest: Value,
    ) -> Result<(Arc<LoadedFunction>, bool), RegistryError> {
        let spec = self.validate_deploy(manifest).await?;
        if spec.name != name {
            return Err(RegistryError::NameMismatch {
                path: name.to_owned(),
                body: spec.name,
            });
        }
        let hash = content_hash(&spec);
        let epoch = self.cache_epoch();
        let (stored, changed) = self
            .store
            .replace_function(&spec, &hash)
            .await
            .map_err(|err| match err {
                StoreError::FunctionNotFound(name) => RegistryError::NotFound(name),
                other => RegistryError::Store(other),
            })?;
        Ok((self.remember(stored, epoch)?, changed))
    }

    /// Deletes the function `name` (its versions stay for its executions).
    pub async fn delete(&self, name: &str) -> Result<(), RegistryError> {
        if self.store.delete_function(name).await? {
            // A read of `name` still in flight may not put it back.
            self.forgotten.fetch_add(1, Ordering::SeqCst);
            self.current.remove(name);
            Ok(())
        } else {
            Err(RegistryError::NotFound(name.to_owned()))
        }
    }

    /// The store the catalog reads.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Drops every cached current version: the next use reads it from the store.
    pub fn forget_current(&self) {
        // Counted first, so a version read before the clear is not put back after it.
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        self.current.clear();
    }

    /// The current version of `name`.
    pub async fn current(&self, name: &str) -> Result<Arc<LoadedFunction>, RegistryError> {
        if let Some(loaded) = self.current.get(name) {
            return Ok(loaded.clone());
        }
        let epoch = self.cache_epoch();
        match self.store.get_function(name).await? {
            Some(version) => self.remember(version, epoch),
            None => Err(RegistryError::NotFound(name.to_owned())),
        }
    }

    /// Version `version` of `name`, even if the function was deleted or replaced since.
    pub async fn version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Arc<LoadedFunction>, RegistryError> {
        if let Some(current) = self.current.get(name) {
            if current.version.version == version {
                return Ok(current.clone());
            }
        }
        if let Some(loaded) = self.versions.get(&(name.to_owned(), version)) {
            return Ok(loaded.clone());
        }
        let stored = self
            .store
            .get_function_version(name, version)
            .await?
            .ok_or_else(|| RegistryError::VersionNotFound(name.to_owned(), version))?;
        let loaded = Arc::new(LoadedFunction::load(stored).map_err(RegistryError::Invalid)?);
        self.cache_version(loaded.clone());
        Ok(loaded)
    }

    /// Current versions of every function, by name.
    pub async fn list(&self) -> Result<Vec<FunctionVersion>, RegistryError> {
        Ok(self.store.list_functions().await?)
    }

    /// Every version of `name`, oldest first.
    pub async fn history(&self, name: &str) -> Result<Vec<FunctionVersion>, RegistryError> {
        let versions = self.store.list_versions(name).await?;
        if versions.is_empty() {
            Err(RegistryError::NotFound(name.to_owned()))
        } else {
            Ok(versions)
        }
    }
}
