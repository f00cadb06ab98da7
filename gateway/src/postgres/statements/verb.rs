//! The verb of a statement, read from the type of its parse-tree node (and, for the few
//! nodes that stand for several commands, the node's own kind field): never from the text.

use std::fmt;

use pg_query::protobuf::{TransactionStmtKind, VariableSetKind};
use pg_query::NodeEnum;

/// What a statement is. `Other` names the rarer commands in snake case (`checkpoint`,
/// `refresh`, `prepare_transaction`…).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    /// COPY … FROM; `program` for FROM PROGRAM (a command run on the database host).
    CopyFrom {
        program: bool,
    },
    /// COPY … TO; `program` for TO PROGRAM.
    CopyTo {
        program: bool,
    },
    Create,
    Alter,
    Drop,
    Truncate,
    Grant,
    Revoke,
    Begin,
    Commit,
    Rollback,
    /// ROLLBACK TO SAVEPOINT: the transaction goes on.
    RollbackTo,
    Savepoint,
    Release,
    Set,
    Reset,
    Show,
    Listen,
    Notify,
    Unlisten,
    Prepare,
    Execute,
    Deallocate,
    Declare,
    Fetch,
    Close,
    /// EXPLAIN; with ANALYZE the explained statement runs.
    Explain {
        analyze: bool,
        of: Explained,
    },
    Call,
    Do,
    Vacuum,
    Analyze,
    Lock,
    Other(&'static str),
}

/// What EXPLAIN can explain (PostgreSQL's `ExplainableStmt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Explained {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    Declare,
    /// CREATE TABLE AS, CREATE MATERIALIZED VIEW.
    Create,
    /// REFRESH MATERIALIZED VIEW.
    Refresh,
    Execute,
}

impl Explained {
    pub fn as_str(self) -> &'static str {
        match self {
            Explained::Select => "select",
            Explained::Insert => "insert",
            Explained::Update => "update",
            Explained::Delete => "delete",
            Explained::Merge => "merge",
            Explained::Declare => "declare",
            Explained::Create => "create",
            Explained::Refresh => "refresh",
            Explained::Execute => "execute",
        }
    }
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Select => "select",
            Verb::Insert => "insert",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::Merge => "merge",
            Verb::CopyFrom { .. } => "copy_from",
            Verb::CopyTo { .. } => "copy_to",
            Verb::Create => "create",
            Verb::Alter => "alter",
            Verb::Drop => "drop",
            Verb::Truncate => "truncate",
            Verb::Grant => "grant",
            Verb::Revoke => "revoke",
            Verb::Begin => "begin",
            Verb::Commit => "commit",
            Verb::Rollback => "rollback",
            Verb::RollbackTo => "rollback_to",
            Verb::Savepoint => "savepoint",
            Verb::Release => "release",
            Verb::Set => "set",
            Verb::Reset => "reset",
            Verb::Show => "show",
            Verb::Listen => "listen",
            Verb::Notify => "notify",
            Verb::Unlisten => "unlisten",
            Verb::Prepare => "prepare",
            Verb::Execute => "execute",
            Verb::Deallocate => "deallocate",
            Verb::Declare => "declare",
            Verb::Fetch => "fetch",
            Verb::Close => "close",
            Verb::Explain { .. } => "explain",
            Verb::Call => "call",
            Verb::Do => "do",
            Verb::Vacuum => "vacuum",
            Verb::Analyze => "analyze",
            Verb::Lock => "lock",
            Verb::Other(name) => name,
        }
    }

    /// The verb of one top-level statement node. `None` for a node that is not a
    /// statement PostgreSQL runs (the caller refuses it rather than guess).
    pub(super) fn of(node: &NodeEnum) -> Option<Verb> {
        use NodeEnum as N;
        Some(match node {
            // SELECT … INTO creates a table (PostgreSQL runs it as CREATE TABLE AS).
            N::SelectStmt(s) if s.into_clause.is_some() => Verb::Create,
            N::SelectStmt(_) => Verb::Select,
            N::InsertStmt(_) => Verb::Insert,
            N::UpdateStmt(_) => Verb::Update,
            N::DeleteStmt(_) => Verb::Delete,
            N::MergeStmt(_) => Verb::Merge,
            N::CopyStmt(c) if c.is_from => Verb::CopyFrom { program: c.is_program },
            N::CopyStmt(c) => Verb::CopyTo { program: c.is_program },
            N::TruncateStmt(_) => Verb::Truncate,
            N::GrantStmt(g) => grant(g.is_grant),
            N::GrantRoleStmt(g) => grant(g.is_grant),
            N::TransactionStmt(t) => transaction(t.kind)?,
            N::VariableSetStmt(v) => match VariableSetKind::try_from(v.kind) {
                Ok(VariableSetKind::VarReset | VariableSetKind::VarResetAll) => Verb::Reset,
                Ok(VariableSetKind::Undefined) | Err(_) => return None,
                Ok(_) => Verb::Set,
            },
            N::VariableShowStmt(_) => Verb::Show,
            N::ListenStmt(_) => Verb::Listen,
            N::NotifyStmt(_) => Verb::Notify,
            N::UnlistenStmt(_) => Verb::Unlisten,
            N::PrepareStmt(_) => Verb::Prepare,
            N::ExecuteStmt(_) => Verb::Execute,
            N::DeallocateStmt(_) => Verb::Deallocate,
            N::DeclareCursorStmt(_) => Verb::Declare,
            N::FetchStmt(f) if f.ismove => Verb::Other("move"),
            N::FetchStmt(_) => Verb::Fetch,
            N::ClosePortalStmt(_) => Verb::Close,
            N::ExplainStmt(e) => Verb::Explain {
                analyze: analyzes(&e.options),
                of: explained(e.query.as_deref().and_then(|n| n.node.as_ref())?)?,
            },
            N::CallStmt(_) => Verb::Call,
            N::DoStmt(_) => Verb::Do,
            N::VacuumStmt(v) if v.is_vacuumcmd => Verb::Vacuum,
            N::VacuumStmt(_) => Verb::Analyze,
            N::LockStmt(_) => Verb::Lock,
            N::CreateStmt(_)
            | N::CreateTableAsStmt(_)
            | N::ViewStmt(_)
            | N::IndexStmt(_)
            | N::CreateSchemaStmt(_)
            | N::CreateSeqStmt(_)
            | N::CreateFunctionStmt(_)
            | N::CreateTrigStmt(_)
            | N::CreateRoleStmt(_)
            | N::CreatedbStmt(_)
            | N::CreateDomainStmt(_)
            | N::CreateExtensionStmt(_)
            | N::CompositeTypeStmt(_)
            | N::CreateEnumStmt(_)
            | N::CreateRangeStmt(_)
            | N::DefineStmt(_)
            | N::RuleStmt(_)
            | N::CreatePolicyStmt(_)
            | N::CreateEventTrigStmt(_)
            | N::CreatePlangStmt(_)
            | N::CreateCastStmt(_)
            | N::CreateConversionStmt(_)
            | N::CreateOpClassStmt(_)
            | N::CreateOpFamilyStmt(_)
            | N::CreateFdwStmt(_)
            | N::CreateForeignServerStmt(_)
            | N::CreateForeignTableStmt(_)
            | N::CreateUserMappingStmt(_)
            | N::CreateTableSpaceStmt(_)
            | N::CreatePublicationStmt(_)
            | N::CreateSubscriptionStmt(_)
            | N::CreateStatsStmt(_)
            | N::CreateTransformStmt(_)
            | N::CreateAmStmt(_)
            | N::ImportForeignSchemaStmt(_) => Verb::Create,
            N::AlterTableStmt(_)
            | N::AlterDomainStmt(_)
            | N::AlterFunctionStmt(_)
            | N::RenameStmt(_)
            | N::AlterObjectSchemaStmt(_)
            | N::AlterOwnerStmt(_)
            | N::AlterObjectDependsStmt(_)
            | N::AlterSeqStmt(_)
            | N::AlterRoleStmt(_)
            | N::AlterRoleSetStmt(_)
            | N::AlterDatabaseStmt(_)
            | N::AlterDatabaseSetStmt(_)
            | N::AlterDatabaseRefreshCollStmt(_)
            | N::AlterEnumStmt(_)
            | N::AlterExtensionStmt(_)
            | N::AlterExtensionContentsStmt(_)
            | N::AlterFdwStmt(_)
            | N::AlterForeignServerStmt(_)
            | N::AlterUserMappingStmt(_)
            | N::AlterTableSpaceOptionsStmt(_)
            | N::AlterTableMoveAllStmt(_)
            | N::AlterOperatorStmt(_)
            | N::AlterTypeStmt(_)
            | N::AlterPolicyStmt(_)
            | N::AlterPublicationStmt(_)
            | N::AlterSubscriptionStmt(_)
            | N::AlterStatsStmt(_)
            | N::AlterCollationStmt(_)
            | N::AlterEventTrigStmt(_)
            | N::AlterTsdictionaryStmt(_)
            | N::AlterTsconfigurationStmt(_)
            | N::AlterOpFamilyStmt(_)
            | N::AlterDefaultPrivilegesStmt(_)
            | N::AlterSystemStmt(_) => Verb::Alter,
            N::DropStmt(_)
            | N::DropRoleStmt(_)
            | N::DropdbStmt(_)
            | N::DropTableSpaceStmt(_)
            | N::DropOwnedStmt(_)
            | N::DropSubscriptionStmt(_)
            | N::DropUserMappingStmt(_) => Verb::Drop,
            N::RefreshMatViewStmt(_) => Verb::Other("refresh"),
            N::CheckPointStmt(_) => Verb::Other("checkpoint"),
            N::DiscardStmt(_) => Verb::Other("discard"),
            N::CommentStmt(_) => Verb::Other("comment"),
            N::SecLabelStmt(_) => Verb::Other("security_label"),
            N::ClusterStmt(_) => Verb::Other("cluster"),
            N::ReindexStmt(_) => Verb::Other("reindex"),
            N::LoadStmt(_) => Verb::Other("load"),
            N::ConstraintsSetStmt(_) => Verb::Other("set_constraints"),
            N::ReassignOwnedStmt(_) => Verb::Other("reassign_owned"),
            _ => return None,
        })
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// As its name alone; [`super::Statement`]'s JSON puts what qualifies it beside it.
impl serde::Serialize for Verb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

fn grant(is_grant: bool) -> Verb {
    if is_grant {
        Verb::Grant
    } else {
        Verb::Revoke
    }
}

fn transaction(kind: i32) -> Option<Verb> {
    use TransactionStmtKind as K;
    Some(match K::try_from(kind).ok()? {
        K::TransStmtBegin | K::TransStmtStart => Verb::Begin,
        K::TransStmtCommit => Verb::Commit,
        K::TransStmtRollback => Verb::Rollback,
        K::TransStmtRollbackTo => Verb::RollbackTo,
        K::TransStmtSavepoint => Verb::Savepoint,
        K::TransStmtRelease => Verb::Release,
        K::TransStmtPrepare => Verb::Other("prepare_transaction"),
        K::TransStmtCommitPrepared => Verb::Other("commit_prepared"),
        K::TransStmtRollbackPrepared => Verb::Other("rollback_prepared"),
        K::Undefined => return None,
    })
}

fn explained(node: &NodeEnum) -> Option<Explained> {
    use NodeEnum as N;
    Some(match node {
        N::SelectStmt(s) if s.into_clause.is_some() => Explained::Create,
        N::SelectStmt(_) => Explained::Select,
        N::InsertStmt(_) => Explained::Insert,
        N::UpdateStmt(_) => Explained::Update,
        N::DeleteStmt(_) => Explained::Delete,
        N::MergeStmt(_) => Explained::Merge,
        N::DeclareCursorStmt(_) => Explained::Declare,
        N::CreateTableAsStmt(_) => Explained::Create,
        N::RefreshMatViewStmt(_) => Explained::Refresh,
        N::ExecuteStmt(_) => Explained::Execute,
        _ => return None,
    })
}

/// Whether EXPLAIN's options run the statement. `EXPLAIN ANALYZE` and
/// `EXPLAIN (ANALYZE)` do; `(ANALYZE off)` does not. A value this cannot read counts as
/// analyze: it is the side that runs the statement, so the one to assume.
fn analyzes(options: &[pg_query::Node]) -> bool {
    options.iter().any(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) if d.defname == "analyze" => match d.arg.as_deref().and_then(|a| a.node.as_ref()) {
            None => true,
            Some(NodeEnum::Boolean(b)) => b.boolval,
            Some(NodeEnum::Integer(i)) => i.ival != 0,
            Some(NodeEnum::String(s)) => !off(&s.sval),
            Some(_) => true,
        },
        _ => false,
    })
}

/// PostgreSQL's false spellings for a boolean option (`parse_bool`), any case, any
/// unambiguous prefix of `false`/`off`/`no`.
fn off(v: &str) -> bool {
    let v = v.to_ascii_lowercase();
    v == "0"
        || (!v.is_empty() && ("false".starts_with(&v) || "no".starts_with(&v)))
        || (v.len() >= 2 && "off".starts_with(&v))
}
