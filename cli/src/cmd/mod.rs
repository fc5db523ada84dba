//! The commands, one file per noun. A command asks the controllers through [`ControllerClient`] and
//! returns plain data (a [`Report`]); it never prints (`topic consume` hands each record to `output`
//! as it arrives). Only `output` turns a report into text, so every
//! command has the same table and JSON behaviour and can be tested without a terminal. `group`,
//! `cluster logdirs`, `topic describe` and `topic trim-prefix` also speak the Kafka protocol to the
//! brokers the controllers list.

pub mod acl;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod consume;
pub mod election;
pub mod features;
pub mod group;
pub mod local;
pub mod probe;
pub mod produce;
pub mod quorum;
pub mod quota;
pub mod reassign;
pub mod secrets;
pub mod topic;
pub mod trim_prefix;
pub mod txn;
pub mod user;

use crate::cli::{
    AclCommand, BrokerCommand, ClusterCommand, ClusterConfigCommand, Command, ConfigChanges,
    ElectionCommand, FeaturesCommand, GroupCommand, PartitionCommand, QuotaCommand,
    ReassignmentCommand, SecretsCommand, TopicCommand, TxnCommand, UserCommand,
};
use crate::client::ControllerClient;
use crate::error::CliError;

pub use broker::{BrokerState, BrokerStatus};
pub use cluster::{ClusterStatus, ControllerStatus, LogDirStatus, LogDirsReport, ReplicaSize};
pub use config::ClusterConfig;
pub use election::{ElectionOutcome, ElectionResult};
pub use group::{DeletedGroup, GroupDetails, GroupList, OffsetDeletion, OffsetReset};
pub use topic::{
    AddedPartitions, CreatedTopic, DeletedTopic, NewTopic, PartitionStatus, TopicConfigs,
    TopicDetails, TopicSummary,
};
pub use trim_prefix::{PartitionTrim, PrefixTrim};

/// What a command found or did, ready to be rendered. JSON and YAML show the inner value itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Report {
    /// `cluster status`.
    ClusterStatus(ClusterStatus),
    /// `cluster logdirs`.
    LogDirs(LogDirsReport),
    /// `cluster quorum`.
    Quorum(quorum::QuorumReport),
    /// `broker list`.
    Brokers(Vec<BrokerStatus>),
    /// `topic create`.
    TopicCreated(CreatedTopic),
    /// `topic list`.
    Topics(Vec<TopicSummary>),
    /// `topic describe`.
    TopicDetails(TopicDetails),
    /// `topic delete`.
    TopicDeleted(DeletedTopic),
    /// `topic alter-config`.
    TopicConfigs(TopicConfigs),
    /// `topic add-partitions`.
    PartitionsAdded(AddedPartitions),
    /// `cluster config get|set|delete`.
    ClusterConfigs(Vec<ClusterConfig>),
    /// `topic trim-prefix`.
    PrefixTrim(PrefixTrim),
    /// `group list`.
    Groups(GroupList),
    /// `group describe`.
    GroupDetails(GroupDetails),
    /// `group reset-offsets`.
    OffsetReset(OffsetReset),
    /// `group delete`.
    GroupDeleted(DeletedGroup),
    /// `group offset-delete`.
    OffsetsDeleted(OffsetDeletion),
    /// `txn list`.
    Transactions(txn::TransactionList),
    /// `txn describe`.
    TransactionDetails(txn::TransactionDetails),
    /// `topic produce`.
    Produced(produce::ProduceReport),
    /// `topic consume`: the records were printed as they came; this is not.
    Consumed(consume::ConsumeSummary),
    /// `election preferred|unclean`.
    Election(Vec<ElectionResult>),
    /// `partition move` and `broker decommission`.
    Moves(reassign::MoveReport),
    /// `reassignment list|cancel`.
    Reassignments(Vec<reassign::Reassignment>),
    /// `local ...`.
    Local(local::LocalClusterView),
    /// `bench produce` and `bench consume`.
    Bench(crate::bench::BenchReport),
    /// `bench metadata`.
    MetadataBench(Box<crate::bench::metadata::MetadataBenchReport>),
    /// `probe`.
    Probe(probe::ProbeResult),
    /// `acl create|list|delete`.
    Acls(acl::AclReport),
    /// `user create|list|delete`.
    Users(user::UserReport),
    /// `quota set|remove|list`.
    Quotas(quota::QuotaReport),
    /// `secrets generate`.
    Secrets(secrets::SecretsReport),
    /// `cluster features [upgrade|downgrade]`.
    Features(features::FeaturesReport),
}

impl Report {
    /// The error a report stands for once printed: a partial failure the exit status must show.
    pub fn failure(&self) -> Option<CliError> {
        match self {
            Report::Election(results) => election::failure(results),
            Report::Moves(report) => reassign::failure(report),
            Report::Groups(list) => group::list_failure(list),
            Report::Transactions(list) => list.failure(),
            Report::PrefixTrim(trim) => trim.failure(),
            Report::LogDirs(report) => cluster::logdirs_failure(report),
            Report::Bench(report) => report.failure().map(CliError::from),
            Report::MetadataBench(report) => report.failure(),
            Report::OffsetsDeleted(deletion) => deletion.failure(),
            Report::Produced(report) => report.failure(),
            _ => None,
        }
    }
}

/// Runs one command against the controllers.
pub async fn execute(command: &Command, client: &ControllerClient) -> Result<Report, CliError> {
    let report = match command {
        Command::Cluster(ClusterCommand::Status) => {
            Report::ClusterStatus(cluster::status(client).await?)
        }
        Command::Cluster(ClusterCommand::Quorum) => Report::Quorum(quorum::quorum(client).await?),
        Command::Cluster(ClusterCommand::Config(command)) => {
            Report::ClusterConfigs(execute_config(command, client).await?)
        }
        Command::Cluster(ClusterCommand::Features { change }) => Report::Features(match change {
            None => features::describe(client).await?,
            Some(FeaturesCommand::Upgrade { feature, dry_run }) => {
                features::update(client, feature.clone(), false, false, *dry_run).await?
            }
            Some(FeaturesCommand::Downgrade {
                feature,
                unsafe_downgrade,
                dry_run,
            }) => {
                features::update(client, feature.clone(), true, *unsafe_downgrade, *dry_run).await?
            }
        }),
        Command::Cluster(ClusterCommand::Logdirs { topic }) => {
            Report::LogDirs(cluster::logdirs(client, topic.as_deref()).await?)
        }
        Command::Broker(BrokerCommand::List) => Report::Brokers(broker::list(client).await?),
        Command::Broker(BrokerCommand::Cordon { broker_id }) => {
            Report::Brokers(broker::cordon(client, *broker_id, true).await?)
        }
        Command::Broker(BrokerCommand::Uncordon { broker_id }) => {
            Report::Brokers(broker::cordon(client, *broker_id, false).await?)
        }
        Command::Broker(BrokerCommand::Unregister { broker_id }) => {
            Report::Brokers(broker::unregister(client, *broker_id).await?)
        }
        Command::Topic(TopicCommand::Create(args)) => {
            let topic = NewTopic {
                name: args.name.clone(),
                partitions: args.partitions,
                replication_factor: args.replication_factor,
                configs: args.config_map()?,
            };
            Report::TopicCreated(topic::create(client, topic).await?)
        }
        Command::Topic(TopicCommand::List) => Report::Topics(topic::list(client).await?),
        Command::Topic(TopicCommand::Describe {
            name,
            metadata_only,
        }) => {
            Report::TopicDetails(topic::describe_with_figures(client, name, *metadata_only).await?)
        }
        Command::Topic(TopicCommand::Delete { name }) => {
            Report::TopicDeleted(topic::delete(client, name).await?)
        }
        Command::Topic(TopicCommand::AlterConfig(args)) => {
            Report::TopicConfigs(topic::alter_config(client, &args.name, args.changes()?).await?)
        }
        Command::Topic(TopicCommand::AddPartitions(args)) => Report::PartitionsAdded(
            topic::add_partitions(
                client,
                &args.name,
                args.count,
                args.replica_assignment.clone().unwrap_or_default(),
            )
            .await?,
        ),
        Command::Topic(TopicCommand::TrimPrefix(args)) => {
            let (mut admin, _) = group::connect(client, args.target.retry_timeout_ms).await?;
            Report::PrefixTrim(
                trim_prefix::trim_prefix(
                    client,
                    &mut admin,
                    &args.name,
                    &args.partitions,
                    args.offset,
                )
                .await?,
            )
        }
        Command::Topic(TopicCommand::Produce(args)) => {
            Report::Produced(produce::produce(client, args, std::io::stdin()).await?)
        }
        Command::Topic(TopicCommand::Consume(_)) | Command::Completion { .. } => {
            return Err(CliError::InvalidArgument(
                "this command writes its own output: run it through chronikctl::run".to_owned(),
            ))
        }
        Command::Group(command) => execute_group(command, client).await?,
        Command::Txn(TxnCommand::List(args)) => Report::Transactions(
            txn::list(client, &args.filters(), args.target.retry_timeout_ms).await?,
        ),
        Command::Txn(TxnCommand::Describe(args)) => Report::TransactionDetails(
            txn::describe(client, &args.transactional_id, args.target.retry_timeout_ms).await?,
        ),
        Command::Broker(BrokerCommand::Decommission { broker_id, wait }) => {
            Report::Moves(reassign::decommission(client, *broker_id, wait.wait()).await?)
        }
        Command::Partition(PartitionCommand::Move {
            topic,
            partition,
            replicas,
            wait,
        }) => Report::Moves(
            reassign::move_partition(client, topic, *partition, replicas.clone(), wait.wait())
                .await?,
        ),
        Command::Reassignment(ReassignmentCommand::List { topic }) => {
            Report::Reassignments(reassign::list(client, topic.as_deref()).await?)
        }
        Command::Reassignment(ReassignmentCommand::Cancel { topic, partition }) => {
            Report::Reassignments(reassign::cancel(client, topic, *partition).await?)
        }
        Command::Election(ElectionCommand::Preferred { topic }) => {
            Report::Election(election::preferred(client, topic.as_deref()).await?)
        }
        Command::Acl(AclCommand::Create(args)) => Report::Acls(acl::create(client, args).await?),
        Command::Acl(AclCommand::List(args)) => Report::Acls(acl::list(client, args).await?),
        Command::Acl(AclCommand::Delete(args)) => Report::Acls(acl::delete(client, args).await?),
        Command::User(UserCommand::Create(args)) => {
            let password = match (&args.password, &args.password_file) {
                (Some(password), _) => user::PasswordSource::Given(password.clone()),
                (None, Some(path)) => user::PasswordSource::File(path.clone()),
                (None, None) => user::PasswordSource::Generate,
            };
            Report::Users(
                user::create(
                    client,
                    &args.name,
                    args.mechanism,
                    password,
                    args.iterations,
                )
                .await?,
            )
        }
        Command::User(UserCommand::List) => Report::Users(user::list(client).await?),
        Command::User(UserCommand::Delete { name, mechanism }) => {
            Report::Users(user::delete(client, name, *mechanism).await?)
        }
        Command::Quota(QuotaCommand::Set(args)) => Report::Quotas(
            quota::set(
                client,
                &args.entity.entity(),
                &args.quotas,
                args.validate_only,
            )
            .await?,
        ),
        Command::Quota(QuotaCommand::Remove(args)) => {
            Report::Quotas(quota::remove(client, &args.entity.entity(), &args.keys).await?)
        }
        Command::Quota(QuotaCommand::List(args)) => {
            Report::Quotas(quota::list(client, &args.entity()).await?)
        }
        Command::Election(ElectionCommand::Unclean { topic, partitions }) => {
            Report::Election(election::unclean(client, topic.as_deref(), partitions).await?)
        }
        Command::Local(command) => Report::Local(local::execute(command).await?),
        Command::Secrets(SecretsCommand::Generate(args)) => Report::Secrets(secrets::generate(
            &args.dir,
            args.controllers,
            args.brokers,
            &args.extra_names,
        )?),
        Command::Bench(crate::cli::BenchCommand::Metadata(args)) => {
            Report::MetadataBench(Box::new(crate::bench::metadata::run(args).await?))
        }
        Command::Bench(command) => Report::Bench(crate::bench::run(command).await?),
        Command::Probe { url } => {
            Report::Probe(probe::probe(url, client.request_timeout(), client.credentials()).await?)
        }
    };
    Ok(report)
}

/// Runs one `cluster config` command.
async fn execute_config(
    command: &ClusterConfigCommand,
    client: &ControllerClient,
) -> Result<Vec<ClusterConfig>, CliError> {
    match command {
        ClusterConfigCommand::Get { keys } => config::get(client, keys).await,
        ClusterConfigCommand::Set { entries } => {
            let changes = ConfigChanges {
                set: crate::cli::entries_map(entries)?,
                delete: Vec::new(),
            };
            config::alter(client, changes).await
        }
        ClusterConfigCommand::Delete { keys } => {
            let mut delete = keys.clone();
            delete.sort();
            delete.dedup();
            let changes = ConfigChanges {
                set: Default::default(),
                delete,
            };
            config::alter(client, changes).await
        }
    }
}

/// Runs one `group` command: the brokers come from the controllers, the rest is the Kafka protocol.
async fn execute_group(
    command: &GroupCommand,
    client: &ControllerClient,
) -> Result<Report, CliError> {
    let report = match command {
        GroupCommand::List(target) => {
            let (mut admin, live) = group::connect(client, target.retry_timeout_ms).await?;
            Report::Groups(group::list(&mut admin, &live).await?)
        }
        GroupCommand::Describe(args) => {
            let (mut admin, _) = group::connect(client, args.target.retry_timeout_ms).await?;
            Report::GroupDetails(group::describe(client, &mut admin, &args.group).await?)
        }
        GroupCommand::ResetOffsets(args) => {
            let (mut admin, _) = group::connect(client, args.target.retry_timeout_ms).await?;
            Report::OffsetReset(
                group::reset_offsets(
                    client,
                    &mut admin,
                    &args.group,
                    &args.topic,
                    &args.partitions,
                    args.reset_target(),
                    args.dry_run,
                )
                .await?,
            )
        }
        GroupCommand::Delete(args) => {
            let (mut admin, _) = group::connect(client, args.target.retry_timeout_ms).await?;
            Report::GroupDeleted(group::delete(&mut admin, &args.group).await?)
        }
        GroupCommand::OffsetDelete(args) => {
            let (mut admin, _) = group::connect(client, args.target.retry_timeout_ms).await?;
            Report::OffsetsDeleted(
                group::offset_delete(
                    client,
                    &mut admin,
                    &args.group,
                    &args.topic,
                    &args.partitions,
                )
                .await?,
            )
        }
    };
    Ok(report)
}
