//! The plan of a synthetic health community: its parties, its patients' hospital stays and USK
//! episodes, its dialogue, and every message that follows from them, decided with a seeded random
//! source (the same seed gives the same community, byte for byte).
//!
//! The plan *is* the truth: [`Episode`]s, [`Admission`]s and [`Question`]s record what the
//! generator decided (when a patient became discharge-ready, when the episode ended and how, when
//! a question was answered), and `super::truth` computes the indicators from them. The messages
//! ([`Planned`]) are only how those decisions are told to the hub. Nothing happens after the
//! horizon (the plan's last day): what would have is not sent, and its episode stays open.
//!
//! Times are Oslo wall-clock times ([`Local`]); 02:00–02:59 is never used, so no time falls in the
//! hour the autumn switch repeats or the spring switch skips.

use time::{Date, Duration, PrimitiveDateTime, Time};

/// An Oslo wall-clock time.
pub type Local = PrimitiveDateTime;

/// What to make.
#[derive(Debug, Clone)]
pub struct Shape {
    pub seed: u64,
    /// Days of traffic, ending with `last_day`.
    pub days: u32,
    pub last_day: Date,
    pub municipalities: usize,
    pub gp_offices: usize,
    /// New hospital stays per day, over the whole community.
    pub admissions_per_day: f64,
    /// New dialogue questions per day.
    pub questions_per_day: f64,
}

/// A communication party: an organisation (level 1) or a service or person under one (level 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub her: u32,
    pub name: String,
    /// The level-1 organisation, for a service or person.
    pub org: Option<u32>,
    /// Kommunenummer (on municipalities and GP offices).
    pub municipality: Option<String>,
    pub side: Side,
    /// A person (a GP), written as `HealthcareProfessional` in the MsgHead.
    pub person: bool,
}

/// Who a party belongs to; decides the message types it takes and the key it signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Hospital,
    Municipality,
    Gp,
}

/// One municipality: its organisation, nursing home and home care.
#[derive(Debug, Clone)]
pub struct Municipality {
    pub org: u32,
    pub nursing_home: u32,
    pub home_care: u32,
}

/// One GP office (level 1) and its doctor (level 2).
#[derive(Debug, Clone)]
pub struct GpOffice {
    pub org: u32,
    pub doctor: u32,
    pub municipality: usize,
}

/// How `LOG_UTSKREVET` says the patient left (8431 Uttilstand, 8408 UtTil).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaves {
    Home,
    NursingHome,
    Kad,
    OtherHf,
    Dead,
}

impl Leaves {
    /// (Uttilstand, UtTil).
    pub fn codes(self) -> (&'static str, &'static str) {
        match self {
            Leaves::Home => ("1", "1"),
            Leaves::NursingHome => ("1", "11"),
            Leaves::Kad => ("1", "21"),
            Leaves::OtherHf => ("1", "3"),
            Leaves::Dead => ("2", "1"),
        }
    }
}

/// One USK episode as decided: its segments, and how it ended (if it did before the horizon).
#[derive(Debug, Clone)]
pub struct Episode {
    pub patient: usize,
    /// The receiving municipality's organisation.
    pub unit: u32,
    /// `[start, end)` of ended segments, and the start of one still running.
    pub segments: Vec<(Date, Date)>,
    pub running: Option<Date>,
    pub avmeldt: bool,
    /// Discharged (with how) on this date; `None`: no `LOG_UTSKREVET` was sent.
    pub discharged: Option<(Date, Leaves)>,
    /// The date of the last USK, avmelding or utskrevet message of the episode (the 90-day
    /// silence of an episode without `LOG_UTSKREVET` runs from it).
    pub last: Date,
}

/// One hospital admission (`LOG_INNLAGT` that was not cancelled).
#[derive(Debug, Clone)]
pub struct Admission {
    pub patient: usize,
    /// When `LOG_INNLAGT` was sent.
    pub at: Local,
    /// The admission date it carries (Hendelsekode 1).
    pub admitted: Date,
    /// The receiving municipality organisation.
    pub unit: u32,
    /// When the Innleggelsesrapport came, if it did.
    pub report: Option<Local>,
}

/// One discharge (`LOG_UTSKREVET`) and its Utskrivningsrapport.
#[derive(Debug, Clone)]
pub struct Discharge {
    pub patient: usize,
    pub at: Local,
    pub unit: u32,
    pub report: Option<Local>,
}

/// One dialogue question and its answer.
#[derive(Debug, Clone)]
pub struct Question {
    pub asked: Local,
    /// The asked organisation.
    pub unit: u32,
    /// The asking organisation (a GP's office, a municipality, the hospital trust).
    pub asker: u32,
    /// Its TypeForesp (list 9152).
    pub type_foresp: &'static str,
    pub answered: Option<Local>,
}

/// The body of a planned message.
#[derive(Debug, Clone)]
pub enum Body {
    /// A `Pasientlogistikk` message: Forsendelsesstatus, events (code, time, Anslag), UtskrevetTil.
    Plo {
        status: &'static str,
        events: Vec<(&'static str, String, bool)>,
        leaves: Option<Leaves>,
    },
    Innleggelsesrapport,
    Utskrivningsrapport,
    Foresporsel {
        type_foresp: &'static str,
    },
    Svar {
        type_foresp: &'static str,
    },
}

/// What becomes of a message at the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered and counted.
    Counted,
    /// Delivered, then erased from the indicators by a cancellation or replaced by an update.
    Erased,
    /// Refused by the gateway (never observed): signed with another party's key.
    Spoofed,
    /// Refused by the gateway: not valid against its schema.
    Invalid,
}

/// How GenDate is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// Without a zone (Oslo time, as most EHRs write it).
    Oslo,
    /// In UTC with `Z`.
    Utc,
}

/// One message of the plan.
#[derive(Debug, Clone)]
pub struct Planned {
    pub msg_id: String,
    pub msg_type: &'static str,
    pub from: u32,
    pub to: u32,
    pub at: Local,
    pub zone: Zone,
    pub patient: usize,
    pub parent: Option<String>,
    pub body: Body,
    pub fate: Fate,
    /// Published a second time (a sender's retry).
    pub again: bool,
}

/// The whole community.
#[derive(Debug, Clone)]
pub struct Community {
    pub shape: Shape,
    pub parties: Vec<Party>,
    pub hospital: u32,
    pub departments: Vec<u32>,
    pub municipalities: Vec<Municipality>,
    pub gp_offices: Vec<GpOffice>,
    /// Synthetic identity numbers, one per patient index.
    pub patients: Vec<String>,
    pub episodes: Vec<Episode>,
    pub admissions: Vec<Admission>,
    pub discharges: Vec<Discharge>,
    pub questions: Vec<Question>,
    pub messages: Vec<Planned>,
}

impl Community {
    pub fn party(&self, her: u32) -> Option<&Party> {
        self.parties.iter().find(|p| p.her == her)
    }

    /// A party's level-1 organisation (itself for an organisation).
    pub fn org_of(&self, her: u32) -> u32 {
        self.party(her).and_then(|p| p.org).unwrap_or(her)
    }

    /// The first day of traffic.
    pub fn first_day(&self) -> Date {
        self.shape.last_day - Duration::days(i64::from(self.shape.days) - 1)
    }
}

const HOSPITAL: u32 = 70000;
const DEPARTMENTS: [&str; 4] = [
    "Medisinsk klinikk",
    "Kirurgisk klinikk",
    "Ortopedisk avdeling",
    "Geriatrisk avdeling",
];
const PLACES: [&str; 10] = [
    "Nordvik",
    "Sørhavn",
    "Østlia",
    "Vestmyra",
    "Fjellby",
    "Dalen",
    "Holmøy",
    "Bakkestad",
    "Lunde",
    "Skogvik",
];

/// An 11-digit number that cannot be anybody's fødselsnummer or D-nummer: a valid date and
/// individual number with the first mod-11 control digit right and the second deliberately wrong
/// (the way `fixtures/make_insight.py` makes them).
pub fn synthetic_id(serial: u32) -> String {
    let day = 1 + serial % 28;
    let month = 1 + (serial / 28) % 12;
    let year = 30 + (serial / 336) % 60;
    let individual = 500 + serial % 400;
    let base = format!("{day:02}{month:02}{year:02}{individual:03}");
    let digits: Vec<u32> = base.chars().filter_map(|c| c.to_digit(10)).collect();
    let check = |d: &[u32], w: &[u32]| {
        let s: u32 = d.iter().zip(w).map(|(a, b)| a * b).sum();
        (11 - s % 11) % 11
    };
    let k1 = check(&digits, &[3, 7, 6, 1, 8, 9, 4, 5, 2]) % 10;
    let mut nine = digits.clone();
    nine.push(k1);
    let k2 = check(&nine, &[5, 4, 3, 2, 7, 6, 5, 4, 3, 2]);
    let wrong = (k2 + 1) % 10;
    format!("{base}{k1}{wrong}")
}

/// Whether `id`'s second control digit is right (a real number's is).
pub fn second_check_digit_valid(id: &str) -> bool {
    let d: Vec<u32> = id.chars().filter_map(|c| c.to_digit(10)).collect();
    if d.len() != 11 {
        return false;
    }
    let s: u32 = d[..10]
        .iter()
        .zip([5, 4, 3, 2, 7, 6, 5, 4, 3, 2])
        .map(|(a, b)| a * b)
        .sum();
    let k2 = (11 - s % 11) % 11;
    k2 < 10 && k2 == d[10]
}

struct Maker {
    rng: fastrand::Rng,
    c: Community,
    /// The instant after which nothing is sent.
    horizon: Local,
    next_id: u64,
}

fn at(d: Date, h: u8, m: u8) -> Local {
    // 02:xx is never asked for; if it were, 03:xx is used (see the module documentation).
    let h = if h == 2 { 3 } else { h.min(23) };
    PrimitiveDateTime::new(d, Time::from_hms(h, m.min(59), 0).unwrap_or(Time::MIDNIGHT))
}

fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

fn time_text(t: Local) -> String {
    format!(
        "{}T{:02}:{:02}:00",
        date_text(t.date()),
        t.hour(),
        t.minute()
    )
}

impl Maker {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.f64() < p
    }

    fn hour(&mut self, lo: u8, hi: u8) -> u8 {
        let h = self.rng.u8(lo..=hi);
        if h == 2 {
            3
        } else {
            h
        }
    }

    fn msg_id(&mut self) -> String {
        self.next_id += 1;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            self.rng.u32(..),
            self.rng.u16(..),
            self.rng.u16(..0x1000),
            self.rng.u16(..0x1000),
            self.next_id
        )
    }

    /// Plans one message if it is sent before the horizon; its MsgId, or `None` if it is not sent.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        msg_type: &'static str,
        from: u32,
        to: u32,
        when: Local,
        patient: usize,
        parent: Option<String>,
        body: Body,
        fate: Fate,
    ) -> Option<String> {
        if when > self.horizon {
            return None;
        }
        let msg_id = self.msg_id();
        let zone = if self.chance(0.1) {
            Zone::Utc
        } else {
            Zone::Oslo
        };
        let again = fate == Fate::Counted && self.chance(0.02);
        self.c.messages.push(Planned {
            msg_id: msg_id.clone(),
            msg_type,
            from,
            to,
            at: when,
            zone,
            patient,
            parent,
            body,
            fate,
            again,
        });
        Some(msg_id)
    }

    fn mark_erased(&mut self, msg_id: &str) {
        if let Some(m) = self.c.messages.iter_mut().find(|m| m.msg_id == msg_id) {
            m.fate = Fate::Erased;
            m.again = false;
        }
    }

    fn plo(status: &'static str, events: Vec<(&'static str, String, bool)>) -> Body {
        Body::Plo {
            status,
            events,
            leaves: None,
        }
    }

    /// A new `LOG_UTSKRIVNINGSKLAR` (Ny) declaring `patient` ready on `day`, sent that day; its
    /// time, or `None` past the horizon.
    fn declare_again(
        &mut self,
        day: Date,
        dept: u32,
        service: u32,
        patient: usize,
        admitted: &(&'static str, String, bool),
    ) -> Option<Local> {
        let t = at(day, self.hour(9, 15), self.rng.u8(0..60));
        let events = vec![admitted.clone(), ("3", date_text(day), false)];
        self.send(
            "LOG_UTSKRIVNINGSKLAR",
            dept,
            service,
            t,
            patient,
            None,
            Self::plo("N", events),
            Fate::Counted,
        )
        .map(|_| t)
    }

    /// One hospital stay of `patient`, admitted at `admit`; may plan a readmission.
    fn stay(&mut self, patient: usize, admit: Local, home: usize, readmission: bool) {
        let m = self.c.municipalities[home].clone();
        let dept = self.c.departments[self.rng.usize(..self.c.departments.len())];
        let service = if self.chance(0.4) {
            m.nursing_home
        } else {
            m.home_care
        };
        let admitted = ("1", time_text(admit), false);
        // LOG_INNLAGT; one in twenty is sent for the wrong stay, cancelled and sent again.
        let mut resend_at = admit;
        let mut innlagt: Option<Local> = None;
        if self.chance(0.05) {
            let Some(wrong) = self.send(
                "LOG_INNLAGT",
                dept,
                service,
                admit,
                patient,
                None,
                Self::plo("N", vec![admitted.clone()]),
                Fate::Counted,
            ) else {
                return;
            };
            let cancelled = self.send(
                "LOG_INNLAGT",
                dept,
                service,
                admit + Duration::minutes(40),
                patient,
                Some(wrong.clone()),
                Self::plo("C", vec![admitted.clone()]),
                Fate::Erased,
            );
            if cancelled.is_some() {
                self.mark_erased(&wrong);
                resend_at = admit + Duration::minutes(55);
            } else {
                innlagt = Some(admit);
            }
        }
        if innlagt.is_none() {
            innlagt = self
                .send(
                    "LOG_INNLAGT",
                    dept,
                    service,
                    resend_at,
                    patient,
                    None,
                    Self::plo("N", vec![admitted.clone()]),
                    Fate::Counted,
                )
                .map(|_| resend_at);
        }
        let Some(innlagt_at) = innlagt else { return };
        // The Innleggelsesrapport: mostly within a day, some late, some never.
        let r = self.rng.f64();
        let report_at = if r < 0.8 {
            Some(innlagt_at + Duration::minutes(self.rng.i64(30..=23 * 60)))
        } else if r < 0.92 {
            Some(innlagt_at + Duration::minutes(self.rng.i64(26 * 60..=70 * 60)))
        } else {
            None
        }
        .filter(|t| t.hour() != 2);
        let report = report_at.and_then(|t| {
            self.send(
                "INNLEGGELSESRAPPORT",
                service,
                dept,
                t,
                patient,
                None,
                Body::Innleggelsesrapport,
                Fate::Counted,
            )
            .map(|_| t)
        });
        self.c.admissions.push(Admission {
            patient,
            at: innlagt_at,
            admitted: admit.date(),
            unit: m.org,
            report,
        });

        // USK or a short stay.
        let d0 = admit.date();
        let mut last_day;
        let mut episode: Option<Episode> = None;
        let mut after = innlagt_at;
        let leaves;
        if self.chance(0.55) {
            let declared = d0 + Duration::days(self.rng.i64(1..=6));
            let sent_at = at(declared, self.hour(9, 15), self.rng.u8(0..60));
            let r = self.rng.f64();
            let (usk_date, anslag) = if r < 0.7 {
                (declared, false)
            } else if r < 0.9 {
                (declared + Duration::days(self.rng.i64(1..=3)), true)
            } else {
                (declared - Duration::days(self.rng.i64(1..=2)), false)
            };
            let usk_events =
                |d: Date, anslag: bool| vec![admitted.clone(), ("3", date_text(d), anslag)];
            let first = self.send(
                "LOG_UTSKRIVNINGSKLAR",
                dept,
                service,
                sent_at,
                patient,
                None,
                Self::plo("N", usk_events(usk_date, anslag)),
                Fate::Counted,
            );
            let Some(first) = first else { return };
            let mut start = usk_date.max(declared);
            let mut last_msg = declared;
            // Every later message of the episode comes after this one (the hub reads them in
            // time order).
            let mut last_time = sent_at;
            let mut open = true;
            let r = self.rng.f64();
            if r < 0.08 {
                // Cancelled the same day: the declaration never stood.
                let c = self.send(
                    "LOG_UTSKRIVNINGSKLAR",
                    dept,
                    service,
                    sent_at + Duration::hours(2),
                    patient,
                    Some(first.clone()),
                    Self::plo("C", usk_events(usk_date, anslag)),
                    Fate::Erased,
                );
                if c.is_some() {
                    self.mark_erased(&first);
                    open = false;
                    // Declared again some days later, or not at all.
                    if self.chance(0.6) {
                        let again = declared + Duration::days(self.rng.i64(2..=5));
                        if let Some(t) =
                            self.declare_again(again, dept, service, patient, &admitted)
                        {
                            open = true;
                            start = again;
                            last_msg = again;
                            last_time = t;
                        }
                    }
                }
            } else if r < 0.23 {
                // An update the next day that moves the (future) date; it replaces the first.
                let upd = declared + Duration::days(1);
                let new_date = start.max(upd) + Duration::days(self.rng.i64(0..=2));
                let t = at(upd, self.hour(9, 15), self.rng.u8(0..60));
                if self
                    .send(
                        "LOG_UTSKRIVNINGSKLAR",
                        dept,
                        service,
                        t,
                        patient,
                        Some(first.clone()),
                        Self::plo("M", usk_events(new_date, new_date > upd)),
                        Fate::Counted,
                    )
                    .is_some()
                {
                    self.mark_erased(&first);
                    start = new_date;
                    last_msg = upd;
                    last_time = t;
                }
            }
            if open {
                let mut e = Episode {
                    patient,
                    unit: m.org,
                    segments: Vec::new(),
                    running: Some(start),
                    avmeldt: false,
                    discharged: None,
                    last: last_msg,
                };
                // Avmelding (new illness) some days in; declared ready again later.
                if self.chance(0.1) {
                    let av = start + Duration::days(self.rng.i64(0..=4));
                    let t = at(av.max(last_msg), self.hour(8, 20), self.rng.u8(0..60))
                        .max(last_time + Duration::minutes(30));
                    let av = t.date();
                    if self
                        .send(
                            "LOG_AVMELDING",
                            dept,
                            service,
                            t,
                            patient,
                            None,
                            Self::plo("N", vec![("4", time_text(t), false)]),
                            Fate::Counted,
                        )
                        .is_some()
                    {
                        let s = e.running.take().unwrap_or(av);
                        e.segments.push((s, av.max(s)));
                        e.avmeldt = true;
                        e.last = av;
                        last_time = t;
                        let again = av + Duration::days(self.rng.i64(2..=6));
                        if let Some(t) =
                            self.declare_again(again, dept, service, patient, &admitted)
                        {
                            e.running = Some(again);
                            e.last = again;
                            last_time = t;
                        }
                    }
                }
                episode = Some(e);
            }
            after = last_time;
            // Discharge: days after the (last) USK date; some the same day; some never told.
            let from = episode
                .as_ref()
                .and_then(|e| e.running.or(e.segments.last().map(|s| s.1)))
                .unwrap_or(start);
            let wait = if self.chance(0.2) {
                0
            } else {
                self.rng.i64(1..=12)
                    + if self.chance(0.2) {
                        self.rng.i64(5..=20)
                    } else {
                        0
                    }
            };
            last_day = from + Duration::days(wait);
            leaves = {
                let r = self.rng.f64();
                if r < 0.07 {
                    None
                } else if r < 0.5 {
                    Some(Leaves::Home)
                } else if r < 0.78 {
                    Some(Leaves::NursingHome)
                } else if r < 0.84 {
                    Some(Leaves::Kad)
                } else if r < 0.91 {
                    Some(Leaves::OtherHf)
                } else {
                    Some(Leaves::Dead)
                }
            };
        } else {
            last_day = d0 + Duration::days(self.rng.i64(0..=8));
            leaves = Some(if self.chance(0.9) {
                Leaves::Home
            } else {
                Leaves::OtherHf
            });
        }
        if last_day < admit.date() {
            last_day = admit.date();
        }
        let mut discharged_alive = None;
        if let Some(how) = leaves {
            let mut t = at(last_day, self.hour(10, 16), self.rng.u8(0..60));
            if t <= after {
                t = after + Duration::minutes(30);
            }
            let sent = self.send(
                "LOG_UTSKREVET",
                dept,
                service,
                t,
                patient,
                None,
                Body::Plo {
                    status: "N",
                    events: vec![("2", time_text(t), false)],
                    leaves: Some(how),
                },
                Fate::Counted,
            );
            if sent.is_some() {
                let day = t.date();
                if let Some(e) = episode.as_mut() {
                    if let Some(s) = e.running.take() {
                        e.segments.push((s, day.max(s)));
                    }
                    e.discharged = Some((day, how));
                    e.last = day;
                }
                let r = self.rng.f64();
                let report_at = if how == Leaves::Dead {
                    None
                } else if r < 0.85 {
                    Some(t + Duration::minutes(self.rng.i64(5..=180)))
                } else if r < 0.95 {
                    Some(at(
                        day + Duration::days(1),
                        self.hour(8, 12),
                        self.rng.u8(0..60),
                    ))
                } else {
                    None
                };
                let report = report_at.and_then(|r| {
                    self.send(
                        "UTSKRIVNINGSRAPPORT",
                        dept,
                        service,
                        r,
                        patient,
                        None,
                        Body::Utskrivningsrapport,
                        Fate::Counted,
                    )
                    .map(|_| r)
                });
                self.c.discharges.push(Discharge {
                    patient,
                    at: t,
                    unit: m.org,
                    report,
                });
                if how != Leaves::Dead {
                    discharged_alive = Some(day);
                }
            }
        }
        if let Some(e) = episode {
            self.c.episodes.push(e);
        }
        // Back in hospital: within 30 days for some, later for a few.
        if let (Some(day), false) = (discharged_alive, readmission) {
            let r = self.rng.f64();
            let back = if r < 0.12 {
                Some(self.rng.i64(1..=30))
            } else if r < 0.17 {
                Some(self.rng.i64(31..=60))
            } else {
                None
            };
            if let Some(k) = back {
                let t = at(
                    day + Duration::days(k),
                    self.hour(0, 23),
                    self.rng.u8(0..60),
                );
                self.stay(patient, t, home, true);
            }
        }
    }

    /// One dialogue question and perhaps its answer.
    fn question(&mut self, day: Date) {
        let n = self.c.municipalities.len();
        let home = self.rng.usize(..n);
        let m = self.c.municipalities[home].clone();
        let service = if self.chance(0.5) {
            m.nursing_home
        } else {
            m.home_care
        };
        let gps: Vec<u32> = self
            .c
            .gp_offices
            .iter()
            .filter(|g| g.municipality == home)
            .map(|g| g.doctor)
            .collect();
        let gp = gps
            .get(self.rng.usize(..gps.len().max(1)))
            .copied()
            .unwrap_or(self.c.gp_offices[0].doctor);
        let dept = self.c.departments[self.rng.usize(..self.c.departments.len())];
        let r = self.rng.f64();
        let (from, to, ty) = if r < 0.35 {
            (gp, service, ["1", "4", "7", "99"][self.rng.usize(..4)])
        } else if r < 0.65 {
            (service, gp, ["4", "6", "99"][self.rng.usize(..3)])
        } else if r < 0.85 {
            (dept, service, ["8", "1"][self.rng.usize(..2)])
        } else {
            (service, dept, ["8", "99"][self.rng.usize(..2)])
        };
        let patient = self.c.patients.len();
        self.c.patients.push(synthetic_id(patient as u32));
        let asked = at(day, self.hour(7, 22), self.rng.u8(0..60));
        let Some(q) = self.send(
            "DIALOG_FORESPORSEL",
            from,
            to,
            asked,
            patient,
            None,
            Body::Foresporsel { type_foresp: ty },
            Fate::Counted,
        ) else {
            return;
        };
        let r = self.rng.f64();
        let delay = if r < 0.6 {
            Some(self.rng.i64(20..=48 * 60))
        } else if r < 0.8 {
            Some(self.rng.i64(2 * 24 * 60..=6 * 24 * 60))
        } else if r < 0.88 {
            Some(self.rng.i64(6 * 24 * 60..=13 * 24 * 60))
        } else if r < 0.92 {
            Some(self.rng.i64(15 * 24 * 60..=20 * 24 * 60))
        } else {
            None
        };
        let answered = delay
            .map(|d| asked + Duration::minutes(d))
            .map(|t| {
                if t.hour() == 2 {
                    t + Duration::hours(1)
                } else {
                    t
                }
            })
            .and_then(|t| {
                self.send(
                    "DIALOG_SVAR",
                    to,
                    from,
                    t,
                    patient,
                    Some(q.clone()),
                    Body::Svar { type_foresp: ty },
                    Fate::Counted,
                )
                .map(|_| t)
            });
        let unit = self.c.org_of(to);
        let asker = self.c.org_of(from);
        self.c.questions.push(Question {
            asked,
            unit,
            asker,
            type_foresp: ty,
            answered,
        });
    }

    /// A message the gateway refuses: signed with the wrong key, or not schema-valid.
    fn refused(&mut self, day: Date) {
        let m = self.c.municipalities[self.rng.usize(..self.c.municipalities.len())].clone();
        let dept = self.c.departments[0];
        let patient = self.c.patients.len();
        self.c.patients.push(synthetic_id(patient as u32));
        let t = at(day, self.hour(8, 18), self.rng.u8(0..60));
        let fate = if self.chance(0.5) {
            Fate::Spoofed
        } else {
            Fate::Invalid
        };
        self.send(
            "LOG_INNLAGT",
            dept,
            m.nursing_home,
            t,
            patient,
            None,
            Self::plo("N", vec![("1", time_text(t), false)]),
            fate,
        );
    }
}

/// Builds the community of `shape`.
pub fn make(shape: &Shape) -> Community {
    let mut parties = vec![Party {
        her: HOSPITAL,
        name: "Fjordsykehuset HF".into(),
        org: None,
        municipality: None,
        side: Side::Hospital,
        person: false,
    }];
    let mut departments = Vec::new();
    for (i, d) in DEPARTMENTS.iter().enumerate() {
        let her = HOSPITAL + 1 + i as u32;
        departments.push(her);
        parties.push(Party {
            her,
            name: format!("Fjordsykehuset HF, {d}"),
            org: Some(HOSPITAL),
            municipality: None,
            side: Side::Hospital,
            person: false,
        });
    }
    let mut municipalities = Vec::new();
    for i in 0..shape.municipalities.max(1) {
        let org = 71000 + 10 * i as u32;
        let place = PLACES[i % PLACES.len()];
        let suffix = if i >= PLACES.len() {
            format!(" {}", i / PLACES.len() + 1)
        } else {
            String::new()
        };
        let number = format!("99{:02}", (i + 1) % 100);
        let name = format!("{place}{suffix} kommune");
        parties.push(Party {
            her: org,
            name: name.clone(),
            org: None,
            municipality: Some(number),
            side: Side::Municipality,
            person: false,
        });
        for (k, s) in ["Sykehjemmet", "Hjemmetjenesten"].iter().enumerate() {
            parties.push(Party {
                her: org + 1 + k as u32,
                name: format!("{name}, {s}"),
                org: Some(org),
                municipality: None,
                side: Side::Municipality,
                person: false,
            });
        }
        municipalities.push(Municipality {
            org,
            nursing_home: org + 1,
            home_care: org + 2,
        });
    }
    let mut gp_offices = Vec::new();
    for j in 0..shape.gp_offices.max(1) {
        let org = 72000 + 10 * j as u32;
        let home = j % municipalities.len();
        let place = PLACES[home % PLACES.len()];
        parties.push(Party {
            her: org,
            name: format!("{place} legesenter {}", j / municipalities.len() + 1),
            org: None,
            municipality: Some(format!("99{:02}", (home + 1) % 100)),
            side: Side::Gp,
            person: false,
        });
        parties.push(Party {
            her: org + 1,
            name: format!("Fastlege {}", j + 1),
            org: Some(org),
            municipality: None,
            side: Side::Gp,
            person: true,
        });
        gp_offices.push(GpOffice {
            org,
            doctor: org + 1,
            municipality: home,
        });
    }
    let first = shape.last_day - Duration::days(i64::from(shape.days.max(1)) - 1);
    let horizon = at(shape.last_day, 23, 59);
    let mut mk = Maker {
        rng: fastrand::Rng::with_seed(shape.seed),
        c: Community {
            shape: shape.clone(),
            parties,
            hospital: HOSPITAL,
            departments,
            municipalities,
            gp_offices,
            patients: Vec::new(),
            episodes: Vec::new(),
            admissions: Vec::new(),
            discharges: Vec::new(),
            questions: Vec::new(),
            messages: Vec::new(),
        },
        horizon,
        next_id: 0,
    };
    // Municipalities differ in size: weights 1, 2, 3, … so some are small (and suppressed).
    let weights: Vec<usize> = (1..=mk.c.municipalities.len()).collect();
    let total: usize = weights.iter().sum();
    for day in 0..shape.days.max(1) {
        let d = first + Duration::days(i64::from(day));
        let admissions = poisson(&mut mk.rng, shape.admissions_per_day);
        for _ in 0..admissions {
            let mut pick = mk.rng.usize(..total);
            let mut home = 0;
            for (i, w) in weights.iter().enumerate() {
                if pick < *w {
                    home = i;
                    break;
                }
                pick -= w;
            }
            let patient = mk.c.patients.len();
            mk.c.patients.push(synthetic_id(patient as u32));
            let t = at(d, mk.hour(0, 23), mk.rng.u8(0..60));
            mk.stay(patient, t, home, false);
        }
        for _ in 0..poisson(&mut mk.rng, shape.questions_per_day) {
            mk.question(d);
        }
        if mk.chance(0.15) {
            mk.refused(d);
        }
    }
    mk.c.messages.sort_by_key(|m| m.at);
    mk.c
}

/// A Poisson-distributed count with mean `mean` (Knuth's method; means here are small).
fn poisson(rng: &mut fastrand::Rng, mean: f64) -> usize {
    let l = (-mean.max(0.0)).exp();
    let (mut k, mut p) = (0usize, 1.0);
    loop {
        p *= rng.f64();
        if p <= l || k > 1000 {
            return k;
        }
        k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_numbers_are_never_valid() {
        for i in 0..5000 {
            let id = synthetic_id(i);
            assert_eq!(id.len(), 11);
            assert!(!second_check_digit_valid(&id), "{id}");
        }
    }
}
