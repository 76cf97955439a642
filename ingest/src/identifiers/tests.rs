use super::validators::*;
use super::*;

use IdentifierKind as K;

/// The (kind, text) pairs the default detector finds in `text`.
fn found(text: &str) -> Vec<(IdentifierKind, &str)> {
    Detector::default().detect(text).into_iter().map(|i| (i.kind, &text[i.start..i.end])).collect()
}

#[test]
fn identifiers_ssn_rules() {
    assert!(ssn_is_valid("123456789"));
    assert!(ssn_is_valid("482317760"));
    for bad in ["000123456", "666012345", "900123456", "999123456", "123004567", "123450000", "12345678", "12345678a"] {
        assert!(!ssn_is_valid(bad), "{bad}");
    }
}

#[test]
fn identifiers_npi_luhn_with_the_cms_prefix() {
    assert!(npi_is_valid("1234567893"));
    assert!(npi_is_valid("1043982713"));
    assert!(!npi_is_valid("1234567890"), "bad check digit");
    assert!(!npi_is_valid("3234567893"), "must start with 1 or 2");
    assert!(!npi_is_valid("123456789"), "too short");
    // plain Luhn without the 80840 prefix is not the NPI rule
    assert!(luhn_is_valid("79927398713"));
    assert!(!luhn_is_valid("79927398710"));
}

#[test]
fn identifiers_dea_checksum() {
    assert!(dea_is_valid("AB1234563"));
    assert!(dea_is_valid("BJ4829163"));
    assert!(dea_is_valid("M91234563"), "9 as the second character (no surname initial)");
    assert!(!dea_is_valid("AB1234567"), "bad check digit");
    assert!(!dea_is_valid("ZB1234563"), "Z is not a registrant type");
    assert!(!dea_is_valid("ab1234563"));
    assert!(!dea_is_valid("AB123456"));
}

#[test]
fn identifiers_vin_check_digit() {
    assert!(vin_is_valid("1M8GDM9AXKP042788"));
    assert!(vin_is_valid("1HGCM82633A004352"));
    assert!(!vin_is_valid("1M8GDM9A1KP042788"), "bad check digit");
    assert!(!vin_is_valid("1M8GDM9AXKP04278"), "16 characters");
    assert!(!vin_is_valid("1M8GDM9AXKO042788"), "O is never used");
    assert!(!vin_is_valid("11111111111111111"), "no letter");
}

#[test]
fn identifiers_ip_and_date_rules() {
    assert!(ipv4_is_valid("10.14.22.187"));
    assert!(!ipv4_is_valid("10.14.22.256"));
    assert!(!ipv4_is_valid("10.14.22"));
    assert!(ipv6_is_valid("2001:db8:85a3::8a2e:370:7334"));
    assert!(ipv6_is_valid("2001:0db8:0000:0000:0000:ff00:0042:8329"));
    assert!(!ipv6_is_valid("fe80::1"), "fewer than three groups");
    assert!(!ipv6_is_valid("14:30:00"));
    assert!(date_is_valid(Some(2024), 2, 29));
    assert!(!date_is_valid(Some(2023), 2, 29));
    assert!(!date_is_valid(None, 13, 1));
    assert!(!date_is_valid(None, 4, 31));
}

#[test]
fn identifiers_each_kind_found_with_its_span() {
    let cases: &[(&str, &[(IdentifierKind, &str)])] = &[
        ("SSN 482-31-7760 on file.", &[(K::Ssn, "482-31-7760")]),
        ("Social Security No.: 512 44 9031", &[(K::Ssn, "512 44 9031")]),
        ("ssn:512449031", &[(K::Ssn, "512449031")]),
        ("MRN: 00482913, seen today", &[(K::MedicalRecord, "00482913")]),
        ("Medical record number SH-2231908.", &[(K::MedicalRecord, "SH-2231908")]),
        ("Acct # 88120453", &[(K::Account, "88120453")]),
        ("account no. AC-7730215", &[(K::Account, "AC-7730215")]),
        ("Member ID: BHH448120973", &[(K::HealthPlan, "BHH448120973")]),
        ("Medicare Beneficiary Identifier (MBI): 1EG4-TE5-MK73", &[(K::HealthPlan, "1EG4-TE5-MK73")]),
        ("Policy no. WCP-7710934", &[(K::HealthPlan, "WCP-7710934")]),
        ("call (617) 555-0142 today", &[(K::Phone, "(617) 555-0142")]),
        ("call 617-555-0142", &[(K::Phone, "617-555-0142")]),
        ("call 617.555.0142", &[(K::Phone, "617.555.0142")]),
        ("wife at +1 617 555 0131.", &[(K::Phone, "+1 617 555 0131")]),
        ("support 1-800-555-0199", &[(K::Phone, "1-800-555-0199")]),
        ("Tel 207-555-0150 | Fax 207-555-0151", &[(K::Phone, "207-555-0150"), (K::Fax, "207-555-0151")]),
        ("F: (312) 555-0190", &[(K::Fax, "(312) 555-0190")]),
        ("Write to jane.doe+intake@clinic.example.org.", &[(K::Email, "jane.doe+intake@clinic.example.org")]),
        ("See https://portal.example.org/a?b=1, then", &[(K::Url, "https://portal.example.org/a?b=1")]),
        ("(www.lakeside-ortho.example)", &[(K::Url, "www.lakeside-ortho.example")]),
        ("host 10.14.22.187 failed", &[(K::IpAddress, "10.14.22.187")]),
        ("peer 2001:db8:85a3::8a2e:370:7334.", &[(K::IpAddress, "2001:db8:85a3::8a2e:370:7334")]),
        ("DOB 03/14/2021", &[(K::Date, "03/14/2021")]),
        ("DOB 3/14/21", &[(K::Date, "3/14/21")]),
        ("at 2021-03-14T10:22:00Z", &[(K::Date, "2021-03-14")]),
        ("on March 14, 2021 we", &[(K::Date, "March 14, 2021")]),
        ("on 14 March 2021 we", &[(K::Date, "14 March 2021")]),
        ("next visit Mar 14.", &[(K::Date, "Mar 14")]),
        ("collected 14-Mar-2021", &[(K::Date, "14-Mar-2021")]),
        ("since March 2021", &[(K::Date, "March 2021")]),
        ("from 01/2022", &[(K::Date, "01/2022")]),
        ("re-check on 12/18.", &[(K::Date, "12/18")]),
        ("Boston, MA 02115", &[(K::Zip, "02115")]),
        ("Concord, NH 03302-4410", &[(K::Zip, "03302-4410")]),
        ("Portland, Maine 04101", &[(K::Zip, "04101")]),
        ("zip code: 10027", &[(K::Zip, "10027")]),
        ("NPI 1234567893", &[(K::Npi, "1234567893")]),
        ("DEA AB1234563", &[(K::Dea, "AB1234563")]),
        ("VIN 1M8GDM9AXKP042788", &[(K::Vehicle, "1M8GDM9AXKP042788")]),
        ("license plate 7XKD482 (MA)", &[(K::Vehicle, "7XKD482")]),
        ("plate: ABC 1234.", &[(K::Vehicle, "ABC 1234")]),
        ("serial number RNB204817S", &[(K::Device, "RNB204817S")]),
        ("S/N: PX-55821-A", &[(K::Device, "PX-55821-A")]),
        ("pump SN: NG1448279H", &[(K::Device, "NG1448279H")]),
        ("UDI (01)00643169007222(17)260930(10)LOT4471.", &[(K::Device, "(01)00643169007222(17)260930(10)LOT4471")]),
        ("Re: Walter Boyce, MR# 0044712", &[(K::MedicalRecord, "0044712")]),
        (
            "patient_id: 00482913; member_id: BHH448120973",
            &[(K::MedicalRecord, "00482913"), (K::HealthPlan, "BHH448120973")],
        ),
        ("life insurance policy\nnumber GL-2024-00771", &[(K::HealthPlan, "GL-2024-00771")]),
        ("My Medicaid ID is NH20411873.", &[(K::HealthPlan, "NH20411873")]),
        ("daughter called from 617 555 0123", &[(K::Phone, "617 555 0123")]),
        ("Tel: 555-0142, fax 555-0144", &[(K::Phone, "555-0142"), (K::Fax, "555-0144")]),
        ("o: 617.555.0111 | f: 617.555.0113", &[(K::Phone, "617.555.0111"), (K::Fax, "617.555.0113")]),
        ("1.2.3.4 - - [04/Mar/2024:09:14:22 +0000]", &[(K::IpAddress, "1.2.3.4"), (K::Date, "04/Mar/2024")]),
        (
            "Bed | MRN | Admit\n---|---|---\n5101 | 00718823 | 03/02/2024\n5102 | 1 of 2 | pending",
            &[(K::MedicalRecord, "00718823"), (K::Date, "03/02/2024")],
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&found(text), expected, "in {text:?}");
    }
}

#[test]
fn identifiers_hard_negatives_are_not_found() {
    let negatives = [
        "aspirin 500 mg daily, 2.5 mL of suspension, 0.4 mg SL",
        "Na 138, K 4.1, WBC 11.2, Hgb 13.5, INR 1.1",
        "BP 120/80, pain 7/10, PHQ-9 14/27, vision 20/20, 5/325 mg",
        "Room 4512, bed B; unit 5 West",
        "diabetic since 2019, in 2015 she moved",
        "age 89, an 89-year-old man",
        "Total due $1,284.50; invoice 40417",
        "SSN 000-12-3456, 666-01-2345, 912-44-8801, 123-00-4567, 123-45-0000",
        "numbers 1234567890 and 1043982716 fail the check",
        "E11.9, I10, Z47.89 and CPT 99213, 80053; CT 74177",
        "version 10.2.3 and firmware version 4.2.1.10",
        "at 14:30 and 09:42:10",
        "SpO2 96%, A1c 8.9%",
        "serial troponins; serial 12-lead ECGs; taking into account 2023-2024",
        "1-2 tablets q4-6h; prednisone 40-30-20-10 mg; 1:100,000 epinephrine",
        "she may 20 mg; the mar 14 notation",
        "DEA AB1234567 and ZZ1234563",
        "key 1HGCM82630A004352",
        "Plan: 2x/week for 12 weeks. Visit: walk-in.",
        "fe80::1 and 00:1A:2B:3C:4D:5E",
        "moderate MR, PASP 48 mmHg; Petri plate 12; serial CXRs",
        "NCT01234567; R01-HL-123456; n=1,204; 95% CI 0.61-0.94; follow-up 2015-2019",
        "VA 20/40, IOP 14/16 mmHg, C/D 0.4/0.5",
    ];
    for text in negatives {
        assert_eq!(found(text), vec![], "in {text:?}");
    }
}

#[test]
fn identifiers_overlaps_keep_the_longer_and_more_specific() {
    assert_eq!(found("viewer http://10.20.4.15:8080/pacs"), vec![(K::Url, "http://10.20.4.15:8080/pacs")]);
    assert_eq!(found("MRN 1234567893"), vec![(K::MedicalRecord, "1234567893")]);
    let found = Detector::default().detect("MRN 1 on 03/14/2021, call 617-555-0142, NPI 1234567893");
    assert!(found.windows(2).all(|w| w[0].end <= w[1].start), "sorted and disjoint: {found:?}");
}

#[test]
fn identifiers_redact_masks_every_span_and_keeps_the_rest() {
    let text = "Pt MRN: 00482913, DOB 04/07/1952, call (617) 555-0142 — thanks.";
    let found = Detector::default().detect(text);
    assert_eq!(found.len(), 3);
    assert_eq!(redact(text, &found), "Pt MRN: [MRN], DOB [DATE], call [PHONE] — thanks.");
    assert_eq!(redact(text, &[]), text);
    // spans that overlap, run past the end or split a character are still masked safely
    let odd = [
        Identifier { kind: K::Date, start: 3, end: 10 },
        Identifier { kind: K::Phone, start: 5, end: 12 },
        Identifier { kind: K::Email, start: text.len() - 10, end: text.len() + 5 }, // inside the '—'
    ];
    let redacted = redact(text, &odd);
    assert!(redacted.starts_with("Pt [DATE]2913, DOB"), "{redacted}");
    assert!(redacted.ends_with("555-0142 [EMAIL]"), "{redacted}");
}

#[test]
fn identifiers_labels_phi_and_pii() {
    let detector = Detector::default();
    let hr = "New hire start date 2023-01-09. SSN 482-31-7760.";
    assert_eq!(labels(hr, &detector.detect(hr)), vec!["pii"]);
    let clinical = "Patient admitted 2023-01-09 with chest pain; aspirin 81 mg.";
    assert_eq!(labels(clinical, &detector.detect(clinical)), vec!["phi", "pii"]);
    let npi_only = "Provider roster: 1234567893.";
    assert_eq!(labels(npi_only, &detector.detect(npi_only)), vec!["phi", "pii"]);
    let nothing = "The patient was admitted with pain.";
    assert_eq!(labels(nothing, &detector.detect(nothing)), Vec::<&str>::new());
}

#[test]
fn identifiers_site_patterns_and_their_errors() {
    let config = DetectorConfig {
        record_patterns: vec![
            RecordPattern { kind: K::MedicalRecord, pattern: r"\bE\d{7}\b".into() },
            RecordPattern { kind: K::Account, pattern: r"HAR=(\d{6,})".into() },
        ],
    };
    let detector = Detector::new(&config).expect("valid patterns");
    let text = "chart E1234567 and HAR=4400123";
    let found: Vec<_> = detector.detect(text).into_iter().map(|i| (i.kind, &text[i.start..i.end])).collect();
    assert_eq!(found, vec![(K::MedicalRecord, "E1234567"), (K::Account, "4400123")]);

    let bad = DetectorConfig { record_patterns: vec![RecordPattern { kind: K::Account, pattern: "ACC(\\d+".into() }] };
    let err = Detector::new(&bad).expect_err("unclosed group");
    let message = err.to_string();
    assert!(message.contains("ACC(\\\\d+"), "{message}");
    assert!(message.contains("account"), "{message}");
}

#[test]
fn identifiers_detector_is_shareable() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<Detector>();
}

#[test]
fn identifiers_kind_names_round_trip() {
    for kind in IdentifierKind::ALL {
        assert_eq!(kind.as_str().parse::<IdentifierKind>(), Ok(kind));
        assert_eq!(serde_json::to_string(&kind).ok(), Some(format!("\"{}\"", kind.as_str())));
        assert!(kind.mask().starts_with('[') && kind.mask().ends_with(']'));
    }
}

#[test]
fn identifiers_loader_strips_markup() {
    let notes =
        load_labelled("# comment\n=== one\nSSN [[ssn:482-31-7760]], call [[phone:617-555-0142]].\n\n").expect("valid");
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].text, "SSN 482-31-7760, call 617-555-0142.");
    let spans: Vec<_> = notes[0].gold.iter().map(|g| (g.kind, &notes[0].text[g.start..g.end])).collect();
    assert_eq!(spans, vec![(K::Ssn, "482-31-7760"), (K::Phone, "617-555-0142")]);
    assert!(load_labelled("=== a\n[[ssn:1").is_err());
    assert!(load_labelled("=== a\n[[nope:1]]").is_err());
    assert!(load_labelled("text first\n=== a\n").is_err());
    assert!(load_labelled("# only comments\n").is_err());
}

#[test]
fn identifiers_labelled_set_precision_and_recall() {
    let notes = load_labelled(LABELLED_NOTES).expect("the labelled notes parse");
    assert!(notes.len() >= 40, "{} notes", notes.len());
    let detector = Detector::default();
    let scores = evaluate(&detector, &notes);
    eprintln!("{}", scores.table());
    for m in mistakes(&detector, &notes) {
        let what = if m.missed { "missed" } else { "false positive" };
        eprintln!("note {}: {what} {} {:?}", m.document, m.kind, m.text);
    }
    assert!(scores.precision >= 0.95, "precision {:.3}", scores.precision);
    assert!(scores.recall >= 0.95, "recall {:.3}", scores.recall);
}

#[test]
fn identifiers_spans_stay_on_char_boundaries_in_any_text() {
    let detector = Detector::default();
    // the labelled notes with their spaces, hyphens and colons swapped for multibyte look-alikes
    let noisy: String = LABELLED_NOTES
        .chars()
        .enumerate()
        .map(|(i, c)| match (c, i % 3) {
            (' ', 0) => '\u{00A0}',
            ('-', 1) => '\u{2011}',
            (':', 2) => '\u{FF1A}',
            _ => c,
        })
        .collect();
    for text in [noisy.as_str(), "Ünïcode MRN: 0048291 — tel (617) 555-0142 ✓ 日付 2021-03-14 ü"] {
        let found = detector.detect(text);
        assert!(!found.is_empty());
        for w in found.windows(2) {
            assert!(w[0].end <= w[1].start, "{w:?}");
        }
        for i in &found {
            assert!(i.start < i.end && text.is_char_boundary(i.start) && text.is_char_boundary(i.end), "{i:?}");
        }
        let redacted = redact(text, &found);
        assert!(redacted.len() <= text.len() + found.len() * 16);
    }
}
