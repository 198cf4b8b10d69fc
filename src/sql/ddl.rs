//! `CREATE TABLE` in Flink's form: physical, computed (`c AS expr`) and metadata columns,
//! `WATERMARK FOR ts AS expr`, `PRIMARY KEY (...) NOT ENFORCED`, `COMMENT`, and `WITH (...)`.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::ast::{ColumnDef, ColumnKind, CreateTable, TableOption, WatermarkDef};
use super::dialect::{consume_word, consume_words};
use super::error::Position;
use super::types::parse_data_type;

/// Parses what follows `CREATE [TEMPORARY] TABLE`.
pub fn parse_create_table(p: &mut Parser) -> Result<CreateTable, ParserError> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name_pos: Position = p.peek_token().span.start.into();
    let name = p.parse_object_name(false)?.to_string();
    let mut table = CreateTable {
        name,
        name_pos,
        if_not_exists,
        columns: Vec::new(),
        watermark: None,
        primary_key: Vec::new(),
        comment: None,
        options: Vec::new(),
    };
    p.expect_token(&Token::LParen)?;
    loop {
        parse_table_element(p, &mut table)?;
        if p.consume_token(&Token::Comma) {
            continue;
        }
        if !p.consume_token(&Token::RParen) {
            return p.expected("`,` or `)` after a column definition", p.peek_token());
        }
        break;
    }
    if p.parse_keyword(Keyword::COMMENT) {
        table.comment = Some(p.parse_literal_string()?);
    }
    if consume_words(p, &["PARTITIONED", "BY"]) {
        return Err(ParserError::ParserError(format!(
            "PARTITIONED BY is not supported: Sluice writes files without directory partitioning{}",
            p.peek_token().span.start
        )));
    }
    if p.parse_keyword(Keyword::WITH) {
        p.expect_token(&Token::LParen)?;
        if !p.consume_token(&Token::RParen) {
            loop {
                let key_tok = p.peek_token();
                let key = p.parse_literal_string()?;
                p.expect_token(&Token::Eq)?;
                let value = p.parse_literal_string()?;
                table.options.push(TableOption {
                    key,
                    value,
                    pos: key_tok.span.start.into(),
                });
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            p.expect_token(&Token::RParen)?;
        }
    }
    Ok(table)
}

fn parse_table_element(p: &mut Parser, table: &mut CreateTable) -> Result<(), ParserError> {
    let start = p.peek_token();
    if consume_word(p, "WATERMARK") {
        p.expect_keyword(Keyword::FOR)?;
        let column = p.parse_identifier()?.value;
        p.expect_keyword(Keyword::AS)?;
        let expr = p.parse_expr()?;
        if table.watermark.is_some() {
            return Err(ParserError::ParserError(format!(
                "a table has at most one WATERMARK{}",
                start.span.start
            )));
        }
        table.watermark = Some(WatermarkDef {
            column,
            expr,
            pos: start.span.start.into(),
        });
        return Ok(());
    }
    if p.parse_keyword(Keyword::CONSTRAINT) {
        p.parse_identifier()?;
    }
    if p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
        p.expect_token(&Token::LParen)?;
        loop {
            table.primary_key.push(p.parse_identifier()?.value);
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        p.expect_token(&Token::RParen)?;
        expect_not_enforced(p)?;
        return Ok(());
    }
    let name = p.parse_identifier()?.value;
    let pos: Position = start.span.start.into();
    if table.columns.iter().any(|c| c.name == name) {
        return Err(ParserError::ParserError(format!(
            "column `{name}` is declared twice{}",
            start.span.start
        )));
    }
    let kind = if p.parse_keyword(Keyword::AS) {
        ColumnKind::Computed(Box::new(p.parse_expr()?))
    } else {
        let data_type = parse_data_type(p)?;
        if consume_word(p, "METADATA") {
            let key = if p.parse_keyword(Keyword::FROM) {
                Some(p.parse_literal_string()?)
            } else {
                None
            };
            let is_virtual = consume_word(p, "VIRTUAL");
            ColumnKind::Metadata {
                data_type,
                key,
                is_virtual,
            }
        } else {
            let nullable = !p.parse_keywords(&[Keyword::NOT, Keyword::NULL]);
            if nullable {
                let _ = p.parse_keyword(Keyword::NULL);
            }
            ColumnKind::Physical {
                data_type,
                nullable,
            }
        }
    };
    let comment = if p.parse_keyword(Keyword::COMMENT) {
        Some(p.parse_literal_string()?)
    } else {
        None
    };
    if p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
        expect_not_enforced(p)?;
        table.primary_key.push(name.clone());
    }
    table.columns.push(ColumnDef {
        name,
        pos,
        kind,
        comment,
    });
    Ok(())
}

fn expect_not_enforced(p: &mut Parser) -> Result<(), ParserError> {
    if consume_words(p, &["NOT", "ENFORCED"]) {
        Ok(())
    } else {
        p.expected(
            "NOT ENFORCED (Flink does not enforce primary keys)",
            p.peek_token(),
        )
    }
}
