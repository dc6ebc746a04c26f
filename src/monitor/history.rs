//! The monitor's memory: a bounded ring of whole-process readings (recent ones at full
//! resolution, older ones downsampled so a run of days stays within a fixed size) and a
//! window of per-site sampled live bytes keyed by raw stack id, with the levels each site
//! held over the windows before (for the new-high test).

use std::collections::VecDeque;

/// One tick's whole-process reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    /// Seconds since the monitor started.
    pub(crate) t: f64,
    /// Exact live heap bytes.
    pub(crate) live_bytes: u64,
    /// Resident set size (0 when unknown).
    pub(crate) rss_bytes: u64,
    /// OS threads (0 when unknown).
    pub(crate) threads: u64,
}

/// Readings: the last `recent_cap` at full resolution, then up to `old_cap` older ones
/// whose resolution halves whenever that part fills (pairs merge, keeping the larger
/// figures: peaks survive downsampling).
#[derive(Debug)]
pub(crate) struct History {
    recent: VecDeque<Point>,
    recent_cap: usize,
    old: Vec<Point>,
    old_cap: usize,
}

impl History {
    pub(crate) fn new(recent_cap: usize, old_cap: usize) -> History {
        History {
            recent: VecDeque::with_capacity(recent_cap + 1),
            recent_cap: recent_cap.max(2),
            old: Vec::with_capacity(old_cap),
            old_cap: old_cap.max(2) & !1,
        }
    }

    pub(crate) fn push(&mut self, p: Point) {
        self.recent.push_back(p);
        if self.recent.len() > self.recent_cap {
            if let Some(oldest) = self.recent.pop_front() {
                if self.old.len() >= self.old_cap {
                    self.old = self
                        .old
                        .chunks(2)
                        .map(|c| Point {
                            t: c[c.len() - 1].t,
                            live_bytes: c.iter().map(|p| p.live_bytes).max().unwrap_or(0),
                            rss_bytes: c.iter().map(|p| p.rss_bytes).max().unwrap_or(0),
                            threads: c.iter().map(|p| p.threads).max().unwrap_or(0),
                        })
                        .collect();
                }
                self.old.push(oldest);
            }
        }
    }

    /// Full-resolution readings with `t >= since`, oldest first.
    pub(crate) fn since(&self, since: f64) -> impl Iterator<Item = &Point> {
        self.recent.iter().filter(move |p| p.t >= since)
    }

    /// The oldest full-resolution reading.
    pub(crate) fn oldest_recent(&self) -> Option<&Point> {
        self.recent.front()
    }

    /// Every reading kept, oldest first (downsampled ones, then recent ones).
    pub(crate) fn all(&self) -> impl Iterator<Item = &Point> {
        self.old.iter().chain(self.recent.iter())
    }

    /// Readings kept (bounded by `recent_cap + old_cap`).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.old.len() + self.recent.len()
    }
}

/// Sampled live bytes of each allocation site (raw stack id) over the window: one column
/// per recorded tick, every row aligned with `times` (and with `clock`, the tick's clock
/// in ns, for the ages of samples). Columns leaving the window are kept per site as the
/// levels it held, one per `segment` columns (their median), for `segments` segments.
/// Sites with no live bytes anywhere in the window are forgotten. Rows are indexed by
/// stack id (ids are indices into the fixed stack table, so dense and small): no hashing
/// per site per tick. Memory: sites × (`cap` + `segment` + `segments`) values.
#[derive(Debug)]
pub(crate) struct SiteSeries {
    cap: usize,
    segment: usize,
    segments: usize,
    times: VecDeque<f64>,
    clock: VecDeque<u64>,
    /// Columns that left the window since the last segment was closed.
    leaving: usize,
    rows: Vec<Option<Row>>,
    /// Ids with a row, in no particular order.
    active: Vec<u32>,
}

#[derive(Debug)]
struct Row {
    values: VecDeque<u64>,
    /// Values in `values` that are not zero.
    nonzero: usize,
    /// Values that left the window, not yet a segment's level.
    leaving: Vec<u64>,
    /// Levels held over the segments before the window, oldest first.
    held: VecDeque<f64>,
}

impl Row {
    fn push(&mut self, v: u64) {
        self.nonzero += usize::from(v != 0);
        self.values.push_back(v);
    }

    fn pop(&mut self) {
        if let Some(v) = self.values.pop_front() {
            self.nonzero -= usize::from(v != 0);
            self.leaving.push(v);
        }
    }

    /// Closes a segment: the level held over the values that left.
    fn close_segment(&mut self, segments: usize) {
        if self.leaving.is_empty() {
            return;
        }
        let mut v: Vec<f64> = self.leaving.drain(..).map(|x| x as f64).collect();
        if self.held.len() >= segments {
            self.held.pop_front();
        }
        self.held.push_back(crate::detect::site::held_level(&mut v));
    }
}

impl SiteSeries {
    /// Rows of `cap` columns, nothing kept from before the window.
    pub(crate) fn new(cap: usize) -> SiteSeries {
        SiteSeries::with_lookback(cap, cap, 0)
    }

    /// Rows of `cap` columns, with `segments` levels of `segment` columns each kept from
    /// before the window.
    pub(crate) fn with_lookback(cap: usize, segment: usize, segments: usize) -> SiteSeries {
        SiteSeries {
            cap: cap.max(2),
            segment: segment.max(1),
            segments,
            times: VecDeque::new(),
            clock: VecDeque::new(),
            leaving: 0,
            rows: Vec::new(),
            active: Vec::new(),
        }
    }

    /// Records one column at `t` seconds: `live` holds (id, value) of every site now.
    pub(crate) fn record(&mut self, t: f64, live: impl Iterator<Item = (u32, u64)>) {
        self.record_at(t, 0, live)
    }

    /// Records one column at `t` seconds and clock `ns`: `live` holds (stack id, live
    /// bytes) of every site now.
    pub(crate) fn record_at(&mut self, t: f64, ns: u64, live: impl Iterator<Item = (u32, u64)>) {
        if self.times.len() >= self.cap {
            self.times.pop_front();
            self.clock.pop_front();
            self.leaving += 1;
            let close = self.leaving >= self.segment;
            if close {
                self.leaving = 0;
            }
            for &id in &self.active {
                if let Some(Some(r)) = self.rows.get_mut(id as usize) {
                    r.pop();
                    if close {
                        r.close_segment(self.segments);
                    }
                }
            }
        }
        self.times.push_back(t);
        self.clock.push_back(ns);
        let len = self.times.len();
        for (id, bytes) in live {
            let i = id as usize;
            if i >= self.rows.len() {
                if bytes == 0 {
                    continue;
                }
                self.rows.resize_with(i + 1, || None);
            }
            let slot = &mut self.rows[i];
            let row = match slot {
                Some(r) => r,
                None if bytes == 0 => continue,
                None => {
                    self.active.push(id);
                    // Sized once: a row grows to the window's columns and no further.
                    let mut values = VecDeque::with_capacity(self.cap);
                    values.resize(len - 1, 0);
                    slot.insert(Row {
                        values,
                        nonzero: 0,
                        leaving: Vec::with_capacity(self.segment),
                        held: VecDeque::with_capacity(self.segments),
                    })
                }
            };
            if row.values.len() == len {
                // A second entry for the same id in one column adds up.
                if let Some(last) = row.values.back_mut() {
                    if *last == 0 && bytes != 0 {
                        row.nonzero += 1;
                    }
                    *last += bytes;
                }
            } else {
                row.push(bytes);
            }
        }
        let rows = &mut self.rows;
        self.active.retain(|&id| {
            let Some(slot) = rows.get_mut(id as usize) else {
                return false;
            };
            let keep = match slot {
                Some(r) => {
                    if r.values.len() < len {
                        r.push(0);
                    }
                    r.nonzero > 0
                }
                None => false,
            };
            if !keep {
                *slot = None;
            }
            keep
        });
    }

    pub(crate) fn times(&self) -> &VecDeque<f64> {
        &self.times
    }

    /// The clock (ns) of each column, aligned with `times()`.
    pub(crate) fn clock(&self) -> &VecDeque<u64> {
        &self.clock
    }

    /// The sites tracked, with their values aligned with `times()`.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (u32, &VecDeque<u64>)> {
        self.active.iter().filter_map(|&id| {
            let r = self.rows.get(id as usize)?.as_ref()?;
            Some((id, &r.values))
        })
    }

    /// The levels site `id` held over the segments before the window, oldest first.
    pub(crate) fn held(&self, id: u32) -> Vec<f64> {
        match self.rows.get(id as usize) {
            Some(Some(r)) => r.held.iter().copied().collect(),
            _ => Vec::new(),
        }
    }

    /// Sites tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.active.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn pt(t: f64, live: u64) -> Point {
        Point {
            t,
            live_bytes: live,
            rss_bytes: 0,
            threads: 1,
        }
    }

    #[test]
    fn history_stays_bounded_over_days_and_keeps_peaks() {
        let mut h = History::new(120, 64);
        // Four days of one reading a second.
        for i in 0..4 * 86_400u64 {
            let live = if i == 1000 { 1 << 40 } else { i };
            h.push(pt(i as f64, live));
            assert!(h.len() <= 120 + 64);
        }
        assert_eq!(h.since(4.0 * 86_400.0 - 60.0).count(), 60);
        assert_eq!(
            h.oldest_recent().map(|p| p.t),
            Some((4 * 86_400 - 120) as f64)
        );
        // The spike at second 1000 survived every halving.
        assert!(h.all().any(|p| p.live_bytes == 1 << 40));
        let ts: Vec<f64> = h.all().map(|p| p.t).collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "time order");
    }

    #[test]
    fn site_rows_align_and_forget_idle_sites() {
        let mut s = SiteSeries::with_lookback(4, 2, 4);
        s.record_at(0.0, 0, [(1, 10), (2, 0)].into_iter());
        s.record_at(1.0, 1, [(1, 20), (3, 5)].into_iter());
        s.record_at(2.0, 2, [(1, 30), (3, 0), (1, 1)].into_iter());
        let rows: HashMap<u32, Vec<u64>> = s
            .rows()
            .map(|(id, r)| (id, r.iter().copied().collect()))
            .collect();
        assert_eq!(rows[&1], vec![10, 20, 31]);
        assert_eq!(rows[&3], vec![0, 5, 0]);
        assert!(!rows.contains_key(&2));
        for t in 3..10 {
            s.record_at(t as f64, t, [(1, 40)].into_iter());
        }
        assert_eq!(s.times().len(), 4);
        assert_eq!(s.clock().iter().copied().collect::<Vec<_>>(), [6, 7, 8, 9]);
        assert_eq!(s.len(), 1, "site 3 had no live bytes in the window");
        assert!(s.rows().all(|(_, r)| r.len() == 4));
        // Six columns left the window: three segments of two, their medians.
        assert_eq!(s.held(1), [15.0, 35.5, 40.0]);
        for t in 10..30 {
            s.record_at(t as f64, t, [(1, 50)].into_iter());
        }
        assert_eq!(s.held(1).len(), 4, "bounded");
    }
}
