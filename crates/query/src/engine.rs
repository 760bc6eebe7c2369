//! [`Engine`]: one DataFusion session over one lake, with the `flows` table and flowscope's
//! functions registered. A session is cheap to query repeatedly (the shell and the server keep
//! one); opening it lists nothing until a query runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use flowscope_lake::Lake;
use flowscope_lake::partition::lake_schema;
use flowscope_lake::snapshot::Snapshots;

use crate::error::{Error, Result};
use crate::insights::InsightsPlan;
use crate::snapshot::SnapshotStore;
pub use crate::table::TABLE;
use crate::table::{DATE, FlowsTable, HOUR, Pending};
use crate::time::TimeRange;

/// A query session over one lake.
pub struct Engine {
    ctx: SessionContext,
    root: PathBuf,
    /// The whole lake, whatever [`Engine::restrict`] narrowed `flows` to.
    table: Arc<dyn datafusion::catalog::TableProvider>,
}

/// A second name for `flows`: the table name in AWS's Athena documentation for VPC flow logs.
pub const ATHENA_TABLE: &str = "vpc_flow_logs";

impl Engine {
    /// Opens the lake at `root`: recovers an interrupted commit if no writer is running (and
    /// reads the lake as it is if one is), then registers `flows` over its partitions.
    ///
    /// # Errors
    /// [`Error::Lake`] when `root` is not a lake; [`Error::Store`] when recovery fails.
    pub async fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_inner(root.as_ref(), false, None, false)
            .await
            .map(|(e, _)| e)
    }

    /// Opens the lake like [`open`](Self::open) for a session whose queries may be cancelled
    /// (the shell's Ctrl-C): every operator yields between batches, so that a query whose
    /// future is dropped stops within a batch, even inside a join that makes many batches from
    /// one input batch.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_stoppable(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_inner(root.as_ref(), false, None, true)
            .await
            .map(|(e, _)| e)
    }

    /// Opens the lake like [`open`](Self::open), with `flows` also reading the returned
    /// [`Pending`] buffer: rows a writer in this process accepted and has not committed yet.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_with_pending(root: impl AsRef<Path>) -> Result<(Self, Pending)> {
        let (engine, pending) = Self::open_inner(root.as_ref(), true, None, false).await?;
        Ok((engine, pending.expect("asked for")))
    }

    /// Opens the lake like [`open_with_pending`](Self::open_with_pending), with the memory of
    /// all its queries together bounded by `memory` bytes: operators that hold rows
    /// (aggregates, sorts, joins, repartitions) share that pool fairly, sorts spill to
    /// temporary files, and a query that needs more fails with a resources-exhausted error.
    /// Its queries also yield between batches in every operator, so that a query stopped at a
    /// time limit stops at once.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_with_pending_limited(
        root: impl AsRef<Path>,
        memory: usize,
    ) -> Result<(Self, Pending)> {
        let (engine, pending) = Self::open_inner(root.as_ref(), true, Some(memory), true).await?;
        Ok((engine, pending.expect("asked for")))
    }

    async fn open_inner(
        root: &Path,
        with_pending: bool,
        memory: Option<usize>,
        stoppable: bool,
    ) -> Result<(Self, Option<Pending>)> {
        if !Lake::exists(root) {
            return Err(Error::Lake {
                path: root.display().to_string(),
                reason: "not a flowscope lake (no _flowscope/ folder); make one with \
                         `flowscope ingest SRC --lake DIR`"
                    .into(),
            });
        }
        // Roll an interrupted commit forward or back if no writer is running. A lake this user
        // may not write (a shared, read-only copy) is read as it is.
        match Lake::open_if_idle(root) {
            Ok(lake) => drop(lake),
            Err(e) => {
                tracing::warn!(lake = %root.display(), error = %e, "reading the lake without recovery")
            }
        }
        let root = root.canonicalize().map_err(|e| Error::Lake {
            path: root.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut state = SessionStateBuilder::new()
            .with_config(session_config())
            .with_runtime_env(runtime(&root, memory)?)
            .with_default_features();
        if stoppable {
            // Queries that are stopped (a time limit, Ctrl-C) must yield to be stopped.
            state = state.with_physical_optimizer_rule(Arc::new(crate::coop::YieldEverywhere));
        }
        let ctx = SessionContext::new_with_state(state.build());
        crate::udf::register(&ctx);
        let mut table = flows_table(&ctx, &root)?;
        let pending =
            with_pending.then(|| Pending::new(datafusion::catalog::TableProvider::schema(&table)));
        if let Some(p) = &pending {
            table = table.with_pending(p.clone());
        }
        let table: Arc<dyn datafusion::catalog::TableProvider> = Arc::new(table);
        ctx.register_table(TABLE, Arc::clone(&table))?;
        // The name AWS's Athena documentation gives the table, so its sample queries run as
        // they are printed.
        ctx.register_table(ATHENA_TABLE, Arc::clone(&table))?;
        Ok((Self { ctx, root, table }, pending))
    }

    /// Narrows `flows` (and `vpc_flow_logs`) for the SQL that follows to the records whose
    /// `start` is in `range` — as `--start`/`--end` do for Insights queries; hour partitions
    /// outside it are not read.
    ///
    /// # Errors
    /// [`Error::Engine`] if the view cannot be planned.
    pub fn restrict(&self, range: TimeRange) -> Result<()> {
        use datafusion::prelude::{col, lit};
        if range.start.is_none() && range.end.is_none() {
            return Ok(());
        }
        let mut frame = self.ctx.read_table(Arc::clone(&self.table))?;
        if let Some(start) = range.start {
            frame = frame.filter(col("start").gt_eq(lit(start)))?;
        }
        if let Some(end) = range.end {
            frame = frame.filter(col("start").lt(lit(end)))?;
        }
        let view = frame.into_view();
        for name in [TABLE, ATHENA_TABLE] {
            self.ctx.deregister_table(name)?;
            self.ctx.register_table(name, Arc::clone(&view))?;
        }
        Ok(())
    }

    /// The first record start and the last record end in the whole lake (`None` when empty):
    /// what a query that found nothing in a time range tells the user the lake holds.
    ///
    /// # Errors
    /// [`Error::Engine`] when the lake cannot be read.
    pub async fn span(&self) -> Result<Option<(i64, i64)>> {
        use datafusion::functions_aggregate::expr_fn::{max, min};
        use datafusion::prelude::col;
        let batches = self
            .ctx
            .read_table(Arc::clone(&self.table))?
            .aggregate(vec![], vec![min(col("start")), max(col("end"))])?
            .collect()
            .await?;
        let value = |i: usize| {
            batches.first().and_then(|b| {
                use arrow_array::Array;
                let a = b
                    .column(i)
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>()?;
                (!a.is_empty() && !a.is_null(0)).then(|| a.value(0))
            })
        };
        Ok(value(0).zip(value(1)))
    }

    /// The lake's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The DataFusion session (for callers that build plans themselves).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The `flows` table's schema: the lake's columns, then `date` and `hour`.
    ///
    /// # Errors
    /// [`Error::Engine`] if the table is missing (it never is after [`Engine::open`]).
    pub async fn schema(&self) -> Result<SchemaRef> {
        let table = self.ctx.table_provider(TABLE).await?;
        Ok(table.schema())
    }

    /// Splits `text` into SQL statements (`;`-separated), keeping positions relative to `text`.
    ///
    /// # Errors
    /// [`Error::Query`] with the position of the first syntax error.
    pub fn parse_sql(&self, text: &str) -> Result<Vec<Statement>> {
        let dialect = GenericDialect {};
        let statements = DFParserBuilder::new(text)
            .with_dialect(&dialect)
            .build()
            .and_then(|mut p| p.parse_statements())
            .map_err(|e| Error::from_sql(e, text))?;
        if statements.is_empty() {
            return Err(Error::query("no SQL statement given", None));
        }
        Ok(statements.into())
    }

    /// Plans one parsed statement; `text` is the SQL it came from (for error positions).
    /// Statements that would write (INSERT, COPY) are refused: the lake changes only through
    /// `flowscope ingest`.
    ///
    /// # Errors
    /// [`Error::Query`] for unknown columns, functions, type errors, with their position.
    pub async fn plan_statement(&self, statement: Statement, text: &str) -> Result<DataFrame> {
        self.plan_with(statement, text, SQLOptions::new().with_allow_dml(false))
            .await
    }

    /// Plans a text holding exactly one query: anything that would change the session or the
    /// files (CREATE, DROP, SET, INSERT, COPY) is refused — for SQL from the network.
    ///
    /// # Errors
    /// As [`Engine::sql`].
    pub async fn query_only(&self, text: &str) -> Result<DataFrame> {
        let statement = self.single_statement(text)?;
        let options = SQLOptions::new()
            .with_allow_dml(false)
            .with_allow_ddl(false)
            .with_allow_statements(false);
        self.plan_with(statement, text, options).await
    }

    async fn plan_with(
        &self,
        statement: Statement,
        text: &str,
        options: SQLOptions,
    ) -> Result<DataFrame> {
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(|e| self.with_tables(Error::from_sql(e, text)))?;
        options
            .verify_plan(&plan)
            .map_err(|e| Error::from_sql(e, text))?;
        self.ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| Error::from_sql(e, text))
    }

    /// An unknown table's error, saying which tables there are (and the nearest one).
    fn with_tables(&self, error: Error) -> Error {
        let Error::Query { message, position } = error else {
            return error;
        };
        let Some(name) = message
            .strip_prefix("table '")
            .and_then(|r| r.strip_suffix("' not found"))
        else {
            return Error::Query { message, position };
        };
        let name = name.rsplit('.').next().unwrap_or(name);
        let mut tables: Vec<String> = Vec::new();
        for catalog in self.ctx.catalog_names() {
            let Some(catalog) = self.ctx.catalog(&catalog) else {
                continue;
            };
            for schema in catalog.schema_names() {
                if schema == "information_schema" {
                    continue;
                }
                if let Some(schema) = catalog.schema(&schema) {
                    tables.extend(schema.table_names());
                }
            }
        }
        tables.sort();
        tables.dedup();
        let near = flowscope_record::nearest(
            &name.to_ascii_lowercase(),
            tables.iter().map(String::as_str),
        )
        .map(|t| format!("; did you mean `{t}`?"))
        .unwrap_or_default();
        let list = tables
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ");
        Error::Query {
            message: format!("there is no table `{name}`: the tables are {list}{near}"),
            position,
        }
    }

    /// Plans a text holding exactly one SQL statement.
    ///
    /// # Errors
    /// As [`Engine::parse_sql`] and [`Engine::plan_statement`]; more than one statement is an
    /// error.
    pub async fn sql(&self, text: &str) -> Result<DataFrame> {
        let statement = self.single_statement(text)?;
        self.plan_statement(statement, text).await
    }

    fn single_statement(&self, text: &str) -> Result<Statement> {
        let mut statements = self.parse_sql(text)?;
        if statements.len() != 1 {
            return Err(Error::query(
                format!("expected one SQL statement, got {}", statements.len()),
                None,
            ));
        }
        Ok(statements.remove(0))
    }

    /// Plans a Logs Insights query over the records whose `start` is in `range`.
    ///
    /// # Errors
    /// [`Error::Query`] pointing into `text` when the query does not parse or plan.
    pub async fn insights(&self, text: &str, range: TimeRange) -> Result<InsightsPlan> {
        let query = crate::insights::parse(text)?;
        crate::insights::plan(&self.ctx, &query, range).await
    }
}

/// Session settings: spans for error positions, Athena's null ordering, `information_schema` for
/// `SHOW TABLES` and
/// `DESCRIBE flows`, Parquet reads that use the page index and row-group statistics.
fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_default_catalog_and_schema("flowscope", "lake");
    let options = config.options_mut();
    options.sql_parser.collect_spans = true;
    // Nulls sort last in both directions, as in Athena (Trino) and DuckDB.
    options.sql_parser.default_null_ordering = "nulls_last".to_string();
    options.execution.parquet.pushdown_filters = true;
    options.execution.parquet.reorder_filters = true;
    config
}

/// The runtime: files read through [`SnapshotStore`] (listings from the lake's manifest, so
/// every query sees the latest commit and only it), and no cache of listings.
fn runtime(root: &Path, memory: Option<usize>) -> Result<Arc<RuntimeEnv>> {
    let snapshots = Arc::new(Snapshots::new(root));
    let store = SnapshotStore::new(snapshots).map_err(|e| Error::Lake {
        path: root.display().to_string(),
        reason: e.to_string(),
    })?;
    let cache = CacheManagerConfig::default().with_list_files_cache_limit(0);
    let mut builder = RuntimeEnvBuilder::new().with_cache_manager(cache);
    if let Some(memory) = memory {
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(memory),
            std::num::NonZeroUsize::new(3).expect("3 is not zero"),
        );
        builder = builder.with_memory_pool(Arc::new(pool));
    }
    let runtime = builder.build_arc()?;
    let url = datafusion::execution::object_store::ObjectStoreUrl::local_filesystem();
    runtime.register_object_store(url.as_ref(), Arc::new(store));
    Ok(runtime)
}

/// The lake's columns with strings as `Utf8View` (read without copying) — the file schema the
/// listing table reads every file as.
fn file_schema() -> SchemaRef {
    let fields: Vec<Field> = lake_schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn flows_table(ctx: &SessionContext, root: &Path) -> Result<FlowsTable> {
    let url = format!("{}/", root.display());
    let url = ListingTableUrl::parse(&url)?;
    let parquet = ctx.state().table_options().parquet.clone();
    let format = ParquetFormat::default().with_options(parquet);
    let options = ListingOptions::new(Arc::new(format))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![
            (DATE.to_string(), DataType::Date32),
            (HOUR.to_string(), DataType::Int32),
        ]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(file_schema());
    Ok(FlowsTable::new(ListingTable::try_new(config)?))
}
