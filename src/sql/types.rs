//! Flink SQL data types → Arrow types.
//!
//! Parsed from sqlparser tokens by hand because Flink's type grammar (`TIMESTAMP_LTZ(3)`,
//! `ROW<a INT>`, `MAP<K, V>`, `STRING`) is not one sqlparser dialect's.
//! TIMESTAMP(p) is a zone-less wall-clock time (Arrow timestamp without time zone), TIMESTAMP_LTZ
//! an instant (Arrow timestamp in UTC), exactly as Flink distinguishes them.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};

pub use crate::stream::flink_type_name;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::dialect::{consume_word, consume_words};

/// Parses one Flink type at the parser's position.
pub fn parse_data_type(p: &mut Parser) -> Result<DataType, ParserError> {
    let tok = p.next_token();
    let name = match &tok.token {
        Token::Word(w) => w.value.to_ascii_uppercase(),
        _ => return p.expected("a data type", tok),
    };
    let ty = match name.as_str() {
        "STRING" | "TEXT" => DataType::Utf8,
        "VARCHAR" | "CHAR" | "CHARACTER" => {
            if name == "CHARACTER" {
                consume_word(p, "VARYING");
            }
            optional_params(p)?;
            DataType::Utf8
        }
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TINYINT" => DataType::Int8,
        "SMALLINT" => DataType::Int16,
        "INT" | "INTEGER" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "FLOAT" | "REAL" => DataType::Float32,
        "DOUBLE" => {
            consume_word(p, "PRECISION");
            DataType::Float64
        }
        "DECIMAL" | "DEC" | "NUMERIC" => {
            let params = optional_params(p)?;
            let precision = params.first().copied().unwrap_or(10);
            let scale = params.get(1).copied().unwrap_or(0);
            if !(1..=38).contains(&precision) || scale > precision {
                return Err(ParserError::ParserError(format!(
                    "DECIMAL({precision}, {scale}) is out of range: precision 1..38, scale ≤ precision{}",
                    tok.span.start
                )));
            }
            DataType::Decimal128(precision as u8, scale as i8)
        }
        "DATE" => DataType::Date32,
        "TIME" => {
            optional_params(p)?;
            skip_zone_clause(p);
            DataType::Time32(TimeUnit::Millisecond)
        }
        "TIMESTAMP" => {
            let unit = timestamp_unit(optional_params(p)?.first().copied().unwrap_or(6));
            if consume_words(p, &["WITH", "LOCAL", "TIME", "ZONE"]) {
                DataType::Timestamp(unit, Some("UTC".into()))
            } else {
                consume_words(p, &["WITHOUT", "TIME", "ZONE"]);
                DataType::Timestamp(unit, None)
            }
        }
        "TIMESTAMP_LTZ" => {
            let unit = timestamp_unit(optional_params(p)?.first().copied().unwrap_or(6));
            DataType::Timestamp(unit, Some("UTC".into()))
        }
        "BYTES" | "VARBINARY" | "BINARY" => {
            optional_params(p)?;
            DataType::Binary
        }
        "ARRAY" => {
            let inner = angle_bracketed(p, parse_data_type)?;
            DataType::List(Arc::new(Field::new("element", inner, true)))
        }
        "MAP" => {
            let (key, value) = angle_bracketed(p, |p| {
                let k = parse_data_type(p)?;
                p.expect_token(&Token::Comma)?;
                Ok((k, parse_data_type(p)?))
            })?;
            let entries = Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", key, false),
                    Field::new("value", value, true),
                ])),
                false,
            );
            DataType::Map(Arc::new(entries), false)
        }
        "ROW" => {
            let close = if p.consume_token(&Token::Lt) {
                CloseBracket::Angle
            } else {
                p.expect_token(&Token::LParen)?;
                CloseBracket::Paren
            };
            let mut fields = Vec::new();
            loop {
                let name = p.parse_identifier()?;
                let ty = parse_data_type(p)?;
                let nullable = !consume_words(p, &["NOT", "NULL"]);
                fields.push(Field::new(name.value, ty, nullable));
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            close.expect(p)?;
            DataType::Struct(Fields::from(fields))
        }
        _ => {
            return Err(ParserError::ParserError(format!(
                "unknown data type `{}`; expected one of STRING, VARCHAR(n), BOOLEAN, TINYINT, SMALLINT, \
                 INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p,s), DATE, TIME, TIMESTAMP(p), TIMESTAMP_LTZ(p), \
                 BYTES, ARRAY<T>, MAP<K,V>, ROW<...>{}",
                tok.token, tok.span.start
            )));
        }
    };
    Ok(ty)
}

/// Flink's TIMESTAMP precision (digits of fractional seconds) → the Arrow unit that holds it.
fn timestamp_unit(precision: u64) -> TimeUnit {
    match precision {
        0..=3 => TimeUnit::Millisecond,
        4..=6 => TimeUnit::Microsecond,
        _ => TimeUnit::Nanosecond,
    }
}

enum CloseBracket {
    Angle,
    Paren,
}

impl CloseBracket {
    fn expect(&self, p: &mut Parser) -> Result<(), ParserError> {
        match self {
            CloseBracket::Angle => expect_gt(p),
            CloseBracket::Paren => p.expect_token(&Token::RParen).map(|_| ()),
        }
    }
}

fn angle_bracketed<T>(
    p: &mut Parser,
    inner: impl FnOnce(&mut Parser) -> Result<T, ParserError>,
) -> Result<T, ParserError> {
    p.expect_token(&Token::Lt)?;
    let value = inner(p)?;
    expect_gt(p)?;
    Ok(value)
}

/// `>`; the script tokenizer splits `>>` into two, so nested types like `ARRAY<ARRAY<INT>>` close.
fn expect_gt(p: &mut Parser) -> Result<(), ParserError> {
    p.expect_token(&Token::Gt).map(|_| ())
}

fn optional_params(p: &mut Parser) -> Result<Vec<u64>, ParserError> {
    let mut params = Vec::new();
    if p.consume_token(&Token::LParen) {
        loop {
            params.push(p.parse_literal_uint()?);
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        p.expect_token(&Token::RParen)?;
    }
    Ok(params)
}

fn skip_zone_clause(p: &mut Parser) {
    if !consume_words(p, &["WITH", "LOCAL", "TIME", "ZONE"]) {
        consume_words(p, &["WITHOUT", "TIME", "ZONE"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    fn parse(text: &str) -> DataType {
        let tokens = crate::sql::dialect::tokenize(text).unwrap();
        let mut p = Parser::new(&GenericDialect {}).with_tokens_with_locations(tokens);
        parse_data_type(&mut p).unwrap()
    }

    #[test]
    fn maps_flink_types_to_arrow() {
        assert_eq!(parse("STRING"), DataType::Utf8);
        assert_eq!(parse("varchar(20)"), DataType::Utf8);
        assert_eq!(parse("DOUBLE PRECISION"), DataType::Float64);
        assert_eq!(parse("DECIMAL(10, 2)"), DataType::Decimal128(10, 2));
        assert_eq!(
            parse("TIMESTAMP(3)"),
            DataType::Timestamp(TimeUnit::Millisecond, None)
        );
        assert_eq!(
            parse("TIMESTAMP"),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(
            parse("TIMESTAMP_LTZ(3)"),
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        assert_eq!(
            parse("TIMESTAMP(3) WITH LOCAL TIME ZONE"),
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        assert_eq!(
            flink_type_name(&parse("ARRAY<ARRAY<INT>>")),
            "ARRAY<ARRAY<INT>>"
        );
        assert_eq!(
            flink_type_name(&parse("MAP<STRING, BIGINT>")),
            "MAP<STRING, BIGINT>"
        );
        assert_eq!(
            flink_type_name(&parse("ROW<a INT, b STRING>")),
            "ROW<a INT, b STRING>"
        );
    }

    #[test]
    fn unknown_type_is_an_error_listing_known_ones() {
        let mut p = Parser::new(&GenericDialect {}).try_with_sql("FOO").unwrap();
        let err = parse_data_type(&mut p).unwrap_err().to_string();
        assert!(
            err.contains("unknown data type `FOO`") && err.contains("TIMESTAMP_LTZ"),
            "{err}"
        );
    }
}
