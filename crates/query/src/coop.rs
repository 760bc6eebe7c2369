//! A physical optimizer rule for sessions whose queries may be stopped (the server's): every
//! operator's input passes through DataFusion's [`CooperativeExec`], so a query yields to the
//! scheduler between batches everywhere, not only where it reads files. An operator that makes
//! many batches from one input batch (a cross join) would otherwise run without ever yielding,
//! and a query stopped at its time limit would go on using a core until it finished.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};

/// Wraps every operator's children in [`CooperativeExec`].
#[derive(Debug, Default)]
pub(crate) struct YieldEverywhere;

fn cooperative(plan: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    if plan.is::<CooperativeExec>() {
        Arc::clone(plan)
    } else {
        Arc::new(CooperativeExec::new(Arc::clone(plan)))
    }
}

impl PhysicalOptimizerRule for YieldEverywhere {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let children = node.children();
            if node.is::<CooperativeExec>() || children.iter().all(|c| c.is::<CooperativeExec>()) {
                return Ok(Transformed::no(node));
            }
            let wrapped = children.into_iter().map(cooperative).collect();
            // A cooperative wrapper has its input's properties: nothing to recompute.
            let options = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
            Ok(Transformed::yes(
                Arc::clone(&node).replace_children(wrapped, options)?,
            ))
        })
        .data()
    }

    fn name(&self) -> &str {
        "yield_everywhere"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
