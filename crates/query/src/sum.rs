//! `sum` that never wraps: DataFusion's built-in `sum` adds 64-bit integers with wrapping
//! arithmetic, so `sum(bytes)` over values near `i64::MAX` prints a negative number. This
//! `sum` replaces it in every session: integers are added with overflow checks and a total
//! beyond BIGINT's range is an error that says how to get it (as Athena's `sum` over BIGINT
//! fails rather than wrap). Every other type is summed by the built-in as before.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, BooleanArray, Int64Array};
use arrow_schema::{DataType, FieldRef};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::functions_aggregate::sum::Sum;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, ReversedUDAF, Signature,
};

/// What an overflowing total says.
const OVERFLOW: &str = "sum overflowed: the total is outside BIGINT's range \
    (-9223372036854775808 to 9223372036854775807); sum(CAST(x AS DECIMAL(38,0))) adds \
    without that limit";

/// The checked `sum`, to register in place of the built-in.
pub fn checked_sum() -> AggregateUDF {
    AggregateUDF::new_from_impl(CheckedSum::default())
}

/// `sum` with overflow-checked integer addition.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
struct CheckedSum {
    inner: Sum,
}

/// Whether the (coerced) argument is summed here rather than by the built-in.
fn checked(args: &AccumulatorArgs) -> bool {
    !args.is_distinct && args.return_type() == &DataType::Int64
}

impl AggregateUDFImpl for CheckedSum {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if checked(&args) {
            return Ok(Box::new(CheckedAccumulator::default()));
        }
        self.inner.accumulator(args)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        if checked(&args) {
            return Ok(Box::new(CheckedGroups::default()));
        }
        self.inner.create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        self.inner.create_sliding_accumulator(args)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Identical
    }

    fn order_sensitivity(&self) -> datafusion::logical_expr::utils::AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }
}

/// One total, checked.
#[derive(Debug, Default)]
struct CheckedAccumulator {
    sum: Option<i64>,
}

impl Accumulator for CheckedAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = values[0].as_primitive::<Int64Type>();
        let Some(batch) = datafusion::arrow::compute::sum_checked(values).ok() else {
            return exec_err!("{OVERFLOW}");
        };
        if let Some(x) = batch {
            let total = self.sum.unwrap_or(0).checked_add(x);
            let Some(total) = total else {
                return exec_err!("{OVERFLOW}");
            };
            self.sum = Some(total);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(self.sum))
    }

    fn size(&self) -> usize {
        size_of::<Self>()
    }
}

/// A total per group, checked.
#[derive(Debug, Default)]
struct CheckedGroups {
    sums: Vec<i64>,
    seen: Vec<bool>,
}

impl CheckedGroups {
    fn add(
        &mut self,
        values: &ArrayRef,
        groups: &[usize],
        filter: Option<&BooleanArray>,
        total: usize,
    ) -> Result<()> {
        self.sums.resize(total, 0);
        self.seen.resize(total, false);
        let values = values.as_primitive::<Int64Type>();
        let raw = values.values();
        let mut overflow = false;
        if values.null_count() == 0 && filter.is_none() {
            for (&g, &x) in groups.iter().zip(raw.iter()) {
                let (sum, o) = self.sums[g].overflowing_add(x);
                self.sums[g] = sum;
                overflow |= o;
                self.seen[g] = true;
            }
        } else {
            for (i, &g) in groups.iter().enumerate() {
                let taken =
                    values.is_valid(i) && filter.is_none_or(|f| f.is_valid(i) && f.value(i));
                if taken {
                    let (sum, o) = self.sums[g].overflowing_add(raw[i]);
                    self.sums[g] = sum;
                    overflow |= o;
                    self.seen[g] = true;
                }
            }
        }
        if overflow {
            return exec_err!("{OVERFLOW}");
        }
        Ok(())
    }
}

impl GroupsAccumulator for CheckedGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.add(&values[0], group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let sums = emit_to.take_needed(&mut self.sums);
        let seen = emit_to.take_needed(&mut self.seen);
        let nulls = NullBuffer::from(seen);
        Ok(Arc::new(Int64Array::new(sums.into(), Some(nulls))))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.add(&values[0], group_indices, None, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Each row its own group: the state is the value, null where the filter drops it.
        let values = values[0].as_primitive::<Int64Type>();
        let Some(filter) = opt_filter else {
            return Ok(vec![Arc::new(values.clone())]);
        };
        let kept = NullBuffer::from_iter(
            (0..values.len()).map(|i| values.is_valid(i) && filter.is_valid(i) && filter.value(i)),
        );
        Ok(vec![Arc::new(Int64Array::new(
            values.values().clone(),
            Some(kept),
        ))])
    }

    fn size(&self) -> usize {
        self.sums.capacity() * size_of::<i64>() + self.seen.capacity()
    }
}
