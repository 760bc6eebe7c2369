//! Scalar functions flow-log questions need, registered in every session:
//!
//! | function | meaning |
//! |---|---|
//! | `is_ip_in_subnet(ip, cidr)` | `ip` lies in `cidr` (IPv4 or IPv6); null when `ip` is null or not an address |
//! | `is_private_ip(ip)` | `ip` is in 10/8, 172.16/12, 192.168/16, 100.64/10 (shared, RFC 6598) or fc00::/7 |
//! | `is_valid_ip(s)`, `is_valid_ipv4(s)`, `is_valid_ipv6(s)` | `s` is an address (of that family) |
//! | `protocol_name(n)` | IANA keyword for a protocol number (`6` → `TCP`), else the number |
//! | `tcp_flags_names(n)` | the flags in a `tcp-flags` value (`19` → `FIN,SYN-ACK`) |
//!
//! Epoch seconds become timestamps with DataFusion's own `from_unixtime(start)` (Athena's name) or
//! `to_timestamp_seconds(start)`.

use std::net::IpAddr;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, StringArrayType};
use arrow_schema::DataType;
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

/// Registers every flowscope function in `ctx`.
pub fn register(ctx: &SessionContext) {
    for udf in all() {
        ctx.register_udf(udf);
    }
    // In place of the built-ins whose output size comes from their arguments, unbounded.
    for udf in crate::capped::all() {
        ctx.register_udf(udf);
    }
    // In place of the built-in `sum`, which wraps on 64-bit overflow.
    ctx.register_udaf(crate::sum::checked_sum());
    // Presto's names, for AWS's Athena queries.
    for udf in crate::presto::all() {
        ctx.register_udf(udf);
    }
    ctx.register_udaf(crate::presto::approx_percentile());
}

/// Every flowscope scalar function.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(InSubnet::new()),
        ScalarUDF::new_from_impl(IpTest::new(IpTestKind::Private)),
        ScalarUDF::new_from_impl(IpTest::new(IpTestKind::Valid)),
        ScalarUDF::new_from_impl(IpTest::new(IpTestKind::ValidV4)),
        ScalarUDF::new_from_impl(IpTest::new(IpTestKind::ValidV6)),
        ScalarUDF::new_from_impl(IntName::new(IntNameKind::Protocol)),
        ScalarUDF::new_from_impl(IntName::new(IntNameKind::TcpFlags)),
    ]
}

pub use flowscope_record::net::{Cidr, is_private};

fn string_signature(args: usize) -> Signature {
    Signature::one_of(
        vec![
            TypeSignature::Uniform(args, vec![DataType::Utf8View]),
            TypeSignature::Uniform(args, vec![DataType::Utf8]),
            TypeSignature::Uniform(args, vec![DataType::LargeUtf8]),
        ],
        Volatility::Immutable,
    )
}

/// Applies `f` to every string of `array`, building a boolean array (null in, null out).
fn map_strings(array: &ArrayRef, mut f: impl FnMut(&str) -> Option<bool>) -> Result<ArrayRef> {
    fn run<'a, S: StringArrayType<'a>>(
        s: S,
        len: usize,
        f: &mut impl FnMut(&str) -> Option<bool>,
    ) -> ArrayRef {
        let mut out = BooleanBuilder::with_capacity(len);
        for v in s.iter() {
            out.append_option(v.and_then(&mut *f));
        }
        Arc::new(out.finish())
    }
    let len = array.len();
    Ok(match array.data_type() {
        DataType::Utf8 => run(array.as_string::<i32>(), len, &mut f),
        DataType::LargeUtf8 => run(array.as_string::<i64>(), len, &mut f),
        DataType::Utf8View => run(array.as_string_view(), len, &mut f),
        DataType::Null => Arc::new(arrow_array::BooleanArray::new_null(len)),
        other => return exec_err!("expected a string, got {other}"),
    })
}

/// Reads a scalar string argument, if the argument is a scalar.
fn scalar_str(value: &ColumnarValue) -> Option<Option<&str>> {
    match value {
        ColumnarValue::Scalar(s) => Some(s.try_as_str().flatten()),
        ColumnarValue::Array(_) => None,
    }
}

/// `is_ip_in_subnet(ip, cidr)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct InSubnet {
    signature: Signature,
    aliases: Vec<String>,
}

impl InSubnet {
    fn new() -> Self {
        Self {
            signature: string_signature(2),
            aliases: vec!["isipinsubnet".into()],
        }
    }
}

impl ScalarUDFImpl for InSubnet {
    fn name(&self) -> &str {
        "is_ip_in_subnet"
    }
    fn aliases(&self) -> &[String] {
        &self.aliases
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [ip, cidr] = args.args.as_slice() else {
            return plan_err!("is_ip_in_subnet takes (ip, cidr)");
        };
        let rows = args.number_rows;
        if let Some(cidr) = scalar_str(cidr) {
            let Some(cidr) = cidr else {
                return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
            };
            let net = match Cidr::parse(cidr) {
                Ok(n) => n,
                Err(e) => return plan_err!("is_ip_in_subnet: {e}"),
            };
            let ips = ip.to_array(rows)?;
            let out = map_strings(&ips, |s| s.parse::<IpAddr>().ok().map(|a| net.contains(a)))?;
            return Ok(ColumnarValue::Array(out));
        }
        // Both arguments vary by row: the rare case, done plainly.
        let ips = arrow_cast_utf8(&ip.to_array(rows)?)?;
        let cidrs = arrow_cast_utf8(&cidr.to_array(rows)?)?;
        let (ips, cidrs) = (ips.as_string::<i32>(), cidrs.as_string::<i32>());
        let mut out = BooleanBuilder::with_capacity(rows);
        for i in 0..rows {
            if ips.is_null(i) || cidrs.is_null(i) {
                out.append_null();
                continue;
            }
            let net = Cidr::parse(cidrs.value(i)).ok();
            let ip = ips.value(i).parse::<IpAddr>().ok();
            out.append_option(net.zip(ip).map(|(n, a)| n.contains(a)));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn arrow_cast_utf8(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(datafusion::arrow::compute::cast(array, &DataType::Utf8)?)
}

/// Which address test an [`IpTest`] performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum IpTestKind {
    Private,
    Valid,
    ValidV4,
    ValidV6,
}

/// `is_private_ip`, `is_valid_ip`, `is_valid_ipv4`, `is_valid_ipv6`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IpTest {
    kind: IpTestKind,
    signature: Signature,
}

impl IpTest {
    fn new(kind: IpTestKind) -> Self {
        Self {
            kind,
            signature: string_signature(1),
        }
    }
}

impl ScalarUDFImpl for IpTest {
    fn name(&self) -> &str {
        match self.kind {
            IpTestKind::Private => "is_private_ip",
            IpTestKind::Valid => "is_valid_ip",
            IpTestKind::ValidV4 => "is_valid_ipv4",
            IpTestKind::ValidV6 => "is_valid_ipv6",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return plan_err!("{} takes one argument", self.name());
        };
        let values = value.to_array(args.number_rows)?;
        let kind = self.kind;
        let out = map_strings(&values, |s| {
            let ip = s.parse::<IpAddr>().ok();
            Some(match kind {
                IpTestKind::Private => return ip.map(is_private),
                IpTestKind::Valid => ip.is_some(),
                IpTestKind::ValidV4 => ip.is_some_and(|a| a.is_ipv4()),
                IpTestKind::ValidV6 => ip.is_some_and(|a| a.is_ipv6()),
            })
        })?;
        Ok(ColumnarValue::Array(out))
    }
}

/// Which integer-to-name mapping an [`IntName`] performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum IntNameKind {
    Protocol,
    TcpFlags,
}

/// `protocol_name(n)` and `tcp_flags_names(n)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IntName {
    kind: IntNameKind,
    signature: Signature,
}

impl IntName {
    fn new(kind: IntNameKind) -> Self {
        Self {
            kind,
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Int32]),
                    TypeSignature::Exact(vec![DataType::Int64]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for IntName {
    fn name(&self) -> &str {
        match self.kind {
            IntNameKind::Protocol => "protocol_name",
            IntNameKind::TcpFlags => "tcp_flags_names",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return plan_err!("{} takes one argument", self.name());
        };
        let values = value.to_array(args.number_rows)?;
        let values = datafusion::arrow::compute::cast(&values, &DataType::Int64)?;
        let values = values.as_primitive::<Int64Type>();
        let mut out = StringBuilder::with_capacity(values.len(), values.len() * 4);
        for v in values.iter() {
            match (v, self.kind) {
                (None, _) => out.append_null(),
                (Some(n), IntNameKind::Protocol) => {
                    match i32::try_from(n).ok().and_then(protocol_name) {
                        Some(name) => out.append_value(name),
                        None => out.append_value(n.to_string()),
                    }
                }
                (Some(n), IntNameKind::TcpFlags) => {
                    out.append_value(tcp_flags_names(i32::try_from(n).unwrap_or(0)))
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The IANA keyword of protocol number `n`, for the protocols seen in VPCs.
pub fn protocol_name(n: i32) -> Option<&'static str> {
    flowscope_record::protocol::keyword(n)
}

/// The flags in a `tcp-flags` value, comma separated: FIN 1, SYN 2, RST 4, PSH 8, ACK 16, URG 32;
/// SYN with ACK is `SYN-ACK` as AWS names it. `0` gives an empty string.
pub fn tcp_flags_names(n: i32) -> String {
    let mut names = Vec::new();
    let syn_ack = n & 0x12 == 0x12;
    if n & 1 != 0 {
        names.push("FIN");
    }
    if syn_ack {
        names.push("SYN-ACK");
    } else if n & 2 != 0 {
        names.push("SYN");
    }
    if n & 4 != 0 {
        names.push("RST");
    }
    if n & 8 != 0 {
        names.push("PSH");
    }
    if n & 16 != 0 && !syn_ack {
        names.push("ACK");
    }
    if n & 32 != 0 {
        names.push("URG");
    }
    names.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(protocol_name(6), Some("TCP"));
        assert_eq!(protocol_name(255), None);
        assert_eq!(tcp_flags_names(2), "SYN");
        assert_eq!(tcp_flags_names(18), "SYN-ACK");
        assert_eq!(tcp_flags_names(3), "FIN,SYN");
        assert_eq!(tcp_flags_names(19), "FIN,SYN-ACK");
        assert_eq!(tcp_flags_names(0), "");
        assert_eq!(tcp_flags_names(4 | 16), "RST,ACK");
    }
}
