//! Arrow ⇄ ClickHouse types: the column type a created table gets, and whether an Arrow column
//! can be written into an existing ClickHouse column (checked at job start, so a mismatch is an
//! error naming the column before any row is sent).

use arrow::datatypes::{DataType, Field, TimeUnit};

/// A ClickHouse identifier, back-quoted.
pub fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('\\', "\\\\").replace('`', "\\`"))
}

/// The ClickHouse column type for an Arrow field (`Nullable(...)` when the field is nullable and
/// ClickHouse allows it); `None` when there is none.
pub fn clickhouse_type(field: &Field) -> Option<String> {
    let inner = base_type(field.data_type())?;
    let composite = matches!(
        field.data_type(),
        DataType::List(_) | DataType::LargeList(_) | DataType::Map(..) | DataType::Struct(_)
    );
    Some(if field.is_nullable() && !composite {
        format!("Nullable({inner})")
    } else {
        inner
    })
}

fn base_type(t: &DataType) -> Option<String> {
    Some(match t {
        DataType::Boolean => "Bool".into(),
        DataType::Int8 => "Int8".into(),
        DataType::Int16 => "Int16".into(),
        DataType::Int32 => "Int32".into(),
        DataType::Int64 => "Int64".into(),
        DataType::UInt8 => "UInt8".into(),
        DataType::UInt16 => "UInt16".into(),
        DataType::UInt32 => "UInt32".into(),
        DataType::UInt64 => "UInt64".into(),
        DataType::Float32 => "Float32".into(),
        DataType::Float64 => "Float64".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "String".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "String".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("Decimal({p}, {s})"),
        DataType::Date32 | DataType::Date64 => "Date32".into(),
        DataType::Time32(_) | DataType::Time64(_) => "Int64".into(),
        DataType::Timestamp(unit, tz) => {
            let precision = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            match tz {
                Some(tz) => format!("DateTime64({precision}, '{}')", tz.replace('\'', "")),
                None => format!("DateTime64({precision})"),
            }
        }
        DataType::List(f) | DataType::LargeList(f) => {
            format!("Array({})", clickhouse_type(f)?)
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return None;
            };
            format!(
                "Map({}, {})",
                base_type(kv[0].data_type())?,
                clickhouse_type(&kv[1])?
            )
        }
        DataType::Struct(fields) => {
            let parts: Option<Vec<String>> = fields
                .iter()
                .map(|f| Some(format!("{} {}", quote(f.name()), clickhouse_type(f)?)))
                .collect();
            format!("Tuple({})", parts?.join(", "))
        }
        _ => return None,
    })
}

/// `Nullable(T)` and `LowCardinality(T)` → `T`.
fn unwrap_modifiers(t: &str) -> &str {
    let mut t = t.trim();
    loop {
        let inner = ["Nullable(", "LowCardinality("]
            .iter()
            .find_map(|p| t.strip_prefix(p).and_then(|r| r.strip_suffix(')')));
        match inner {
            Some(i) => t = i.trim(),
            None => return t,
        }
    }
}

/// The arguments of `Name(args)` split at top-level commas.
fn type_args(t: &str) -> Vec<&str> {
    let Some(open) = t.find('(') else {
        return Vec::new();
    };
    let body = &t[open + 1..t.len().saturating_sub(1)];
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in body.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(body[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(body[start..].trim());
    out
}

/// Whether ClickHouse reads an Arrow column of type `arrow` into a column of type `ch` (as it
/// converts on INSERT ... FORMAT ArrowStream) without losing its meaning.
pub fn writable(arrow: &DataType, ch: &str) -> bool {
    let ch = unwrap_modifiers(ch);
    let name = ch.split('(').next().unwrap_or(ch).trim();
    let integer = |n: &str| n.starts_with("Int") || n.starts_with("UInt");
    let numeric = |n: &str| integer(n) || n.starts_with("Float") || n.starts_with("Decimal");
    match arrow {
        DataType::Boolean => name == "Bool" || name == "UInt8",
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => numeric(name),
        DataType::Float32 | DataType::Float64 => {
            name.starts_with("Float") || name.starts_with("Decimal")
        }
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            name.starts_with("Decimal") || name.starts_with("Float")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            matches!(name, "String" | "FixedString" | "Enum8" | "Enum16" | "UUID")
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            matches!(name, "String" | "FixedString")
        }
        DataType::Date32 | DataType::Date64 => matches!(name, "Date" | "Date32"),
        DataType::Timestamp(..) => matches!(name, "DateTime" | "DateTime64"),
        DataType::Time32(_) | DataType::Time64(_) => integer(name),
        DataType::List(f) | DataType::LargeList(f) => {
            name == "Array"
                && type_args(ch)
                    .first()
                    .is_some_and(|e| writable(f.data_type(), e))
        }
        DataType::Map(entries, _) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return false;
            };
            let args = type_args(ch);
            name == "Map"
                && args.len() == 2
                && writable(kv[0].data_type(), args[0])
                && writable(kv[1].data_type(), args[1])
        }
        DataType::Struct(fields) => {
            let args = type_args(ch);
            name == "Tuple"
                && args.len() == fields.len()
                && fields.iter().zip(&args).all(|(f, a)| {
                    // Named tuple elements are `name Type`; unnamed ones just `Type`.
                    let ty = a
                        .split_once(' ')
                        .filter(|(n, _)| !n.contains('('))
                        .map_or(*a, |(_, t)| t);
                    writable(f.data_type(), ty)
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Fields;

    use super::*;

    #[test]
    fn created_types_follow_the_dialect_types() {
        let f =
            |t: DataType, nullable: bool| clickhouse_type(&Field::new("x", t, nullable)).unwrap();
        assert_eq!(f(DataType::Utf8, true), "Nullable(String)");
        assert_eq!(f(DataType::Int64, false), "Int64");
        assert_eq!(
            f(DataType::Timestamp(TimeUnit::Millisecond, None), true),
            "Nullable(DateTime64(3))"
        );
        assert_eq!(
            f(
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false
            ),
            "DateTime64(3, 'UTC')"
        );
        assert_eq!(
            f(DataType::Decimal128(10, 2), true),
            "Nullable(Decimal(10, 2))"
        );
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        assert_eq!(f(list, true), "Array(Nullable(Int32))");
        let row = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        assert_eq!(
            f(row, true),
            "Tuple(`a` Nullable(Int32), `b` Nullable(String))"
        );
        assert_eq!(quote("we`ird"), "`we\\`ird`");
    }

    #[test]
    fn writable_checks_kinds_through_modifiers() {
        assert!(writable(&DataType::Utf8, "LowCardinality(String)"));
        assert!(writable(&DataType::Utf8, "Nullable(String)"));
        assert!(!writable(&DataType::Utf8, "Int64"));
        assert!(writable(&DataType::Int64, "UInt32"));
        assert!(!writable(&DataType::Float64, "Int64"));
        assert!(writable(
            &DataType::Timestamp(TimeUnit::Millisecond, None),
            "DateTime64(3, 'UTC')"
        ));
        let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        assert!(writable(&list, "Array(LowCardinality(String))"));
        assert!(!writable(&list, "Array(Int8)"));
        let row = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        assert!(writable(&row, "Tuple(a Int32, b String)"));
        assert!(!writable(&row, "Tuple(a Int32)"));
    }
}
