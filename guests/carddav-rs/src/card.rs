//! A vCard (3.0 or 4.0) as a `contact/card` (`schemas/card.json`): the
//! fields a collection merges and shows, and nothing the schema lacks.

use calcard::common::PartialDateTime;
use calcard::vcard::{VCard, VCardEntry, VCardProperty, VCardValue};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    pub uid: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday: Option<String>,
    /// When this connector stored this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
}

impl Card {
    /// Parses one vCard; `fallback_uid` names it when it has no UID (the
    /// entry's file name on the server, which is as stable).
    pub fn from_vcard(text: &str, fallback_uid: &str) -> Result<Card, String> {
        let vcard = VCard::parse(text).map_err(|entry| format!("not a vCard: {entry:?}"))?;
        let uid = vcard
            .uid()
            .map(str::trim)
            .filter(|uid| !uid.is_empty())
            .unwrap_or(fallback_uid)
            .chars()
            .take(256)
            .collect::<String>();
        let (family, given) = match vcard.property(&VCardProperty::N) {
            Some(n) => (component(n, 0), component(n, 1)),
            None => (None, None),
        };
        let emails: Vec<String> = texts(&vcard, VCardProperty::Email)
            .map(|email| email.to_lowercase())
            .collect();
        let phones: Vec<String> = texts(&vcard, VCardProperty::Tel)
            .map(|tel| tel.strip_prefix("tel:").unwrap_or(&tel).to_string())
            .collect();
        let full_name = first_text(&vcard, VCardProperty::Fn);
        let built_name = [given.as_deref(), family.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let name = full_name
            .or_else(|| (!built_name.is_empty()).then_some(built_name))
            .or_else(|| emails.first().cloned())
            .or_else(|| phones.first().cloned())
            .unwrap_or_else(|| uid.clone());
        Ok(Card {
            uid,
            name,
            given,
            family,
            emails,
            phones,
            org: vcard
                .property(&VCardProperty::Org)
                .and_then(|org| component(org, 0)),
            title: first_text(&vcard, VCardProperty::Title),
            note: first_text(&vcard, VCardProperty::Note),
            birthday: vcard
                .property(&VCardProperty::Bday)
                .and_then(|bday| bday.values.first())
                .and_then(|value| match value {
                    VCardValue::PartialDateTime(date) => date_text(date),
                    other => other.as_text().map(str::to_string),
                }),
            updated: None,
        })
    }

    /// Whether the two say the same, whenever each was stored.
    pub fn same_as(&self, other: &Card) -> bool {
        Card {
            updated: None,
            ..self.clone()
        } == Card {
            updated: None,
            ..other.clone()
        }
    }
}

/// The non-empty text values of every `property` of the card.
fn texts(vcard: &VCard, property: VCardProperty) -> impl Iterator<Item = String> + '_ {
    vcard
        .entries
        .iter()
        .filter(move |entry| entry.name == property)
        .filter_map(|entry| entry.values.first()?.as_text())
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
}

fn first_text(vcard: &VCard, property: VCardProperty) -> Option<String> {
    texts(vcard, property).next()
}

/// The `index`th part of a structured value (`N`: family;given;...).
fn component(entry: &VCardEntry, index: usize) -> Option<String> {
    let text = match entry.values.get(index)? {
        VCardValue::Component(parts) => parts.join(" "),
        other => other.as_text()?.to_string(),
    };
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// `1815-12-10`, or `--12-10` for a birthday without its year.
fn date_text(date: &PartialDateTime) -> Option<String> {
    match (date.year, date.month, date.day) {
        (Some(year), Some(month), Some(day)) => Some(format!("{year:04}-{month:02}-{day:02}")),
        (None, Some(month), Some(day)) => Some(format!("--{month:02}-{day:02}")),
        (Some(year), None, None) => Some(format!("{year:04}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vcard_3_becomes_a_card() {
        let card = Card::from_vcard(
            "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:ada-1\r\nFN:Ada Lovelace\r\nN:Lovelace;Ada;;;\r\n\
             EMAIL;TYPE=INTERNET:Ada@Example.org\r\nTEL;TYPE=CELL:+44 20 7946 0001\r\n\
             ORG:Analytical Engines;Research\r\nBDAY:1815-12-10\r\nEND:VCARD\r\n",
            "x",
        )
        .unwrap();
        assert_eq!(card.uid, "ada-1");
        assert_eq!(card.name, "Ada Lovelace");
        assert_eq!(card.given.as_deref(), Some("Ada"));
        assert_eq!(card.family.as_deref(), Some("Lovelace"));
        assert_eq!(card.emails, ["ada@example.org"]);
        assert_eq!(card.phones, ["+44 20 7946 0001"]);
        assert_eq!(card.org.as_deref(), Some("Analytical Engines"));
        assert_eq!(card.birthday.as_deref(), Some("1815-12-10"));
    }

    #[test]
    fn a_card_without_uid_or_name_is_named_by_what_it_has() {
        let card = Card::from_vcard(
            "BEGIN:VCARD\nVERSION:4.0\nEMAIL:bob@example.org\nEND:VCARD\n",
            "bob.vcf",
        )
        .unwrap();
        assert_eq!(
            (card.uid.as_str(), card.name.as_str()),
            ("bob.vcf", "bob@example.org")
        );
    }

    #[test]
    fn garbage_is_not_a_card() {
        assert!(Card::from_vcard("<html>nope</html>", "x").is_err());
    }
}
