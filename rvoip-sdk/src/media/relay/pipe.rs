//! Sample pipes between media sessions inside the relay: one session's sink writes mono
//! samples that another session's source (or a conference mixer) reads, at one fixed rate.
//! Bounded: a writer that runs ahead loses its oldest samples, a reader that runs dry reads
//! silence, so a pipe never builds up delay.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::media::audio::{AudioError, AudioSink, AudioSource};

/// The most audio a pipe holds, in ms: older samples are dropped (a party whose clock runs
/// fast must not build up delay).
const PIPE_MAX_MS: u32 = 120;

/// Mono samples flowing from one session's sink to the other session's source.
#[derive(Debug, Default)]
pub(super) struct Pipe {
    samples: VecDeque<i16>,
    /// Samples kept at most.
    max: usize,
    /// The writer is muted: a reader that honours it (the conference mixer) takes silence.
    pub(super) muted: bool,
}

pub(super) type SharedPipe = Arc<Mutex<Pipe>>;

pub(super) fn new_pipe(rate_hz: u32) -> SharedPipe {
    let max = (u64::from(rate_hz) * u64::from(PIPE_MAX_MS) / 1000) as usize;
    Arc::new(Mutex::new(Pipe {
        samples: VecDeque::with_capacity(max),
        max,
        muted: false,
    }))
}

/// The writing end of a pipe (a session's sink).
pub(super) struct PipeSink {
    rate: u32,
    pipe: SharedPipe,
}

impl AudioSink for PipeSink {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn write(&mut self, samples: &[i16]) -> Result<(), AudioError> {
        if let Ok(mut p) = self.pipe.lock() {
            p.put(samples);
        }
        Ok(())
    }
}

/// The reading end of a pipe (a session's source): silence when it runs dry.
pub(super) struct PipeSource {
    rate: u32,
    pipe: SharedPipe,
}

impl AudioSource for PipeSource {
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn read(&mut self, out: &mut [i16]) -> usize {
        match self.pipe.lock() {
            Ok(mut p) => p.take_into(out),
            Err(_) => out.iter_mut().for_each(|o| *o = 0),
        }
        out.len()
    }
}

impl Pipe {
    /// Moves up to `out.len()` of the oldest samples into `out`, silence for the rest.
    pub(super) fn take_into(&mut self, out: &mut [i16]) {
        let take = out.len().min(self.samples.len());
        for (o, s) in out.iter_mut().zip(self.samples.drain(..take)) {
            *o = s;
        }
        out.iter_mut().skip(take).for_each(|o| *o = 0);
    }

    /// Appends `samples`, dropping the oldest beyond the bound.
    pub(super) fn put(&mut self, samples: &[i16]) {
        self.samples.extend(samples.iter().copied());
        let excess = self.samples.len().saturating_sub(self.max);
        self.samples.drain(..excess);
    }
}

impl PipeSink {
    /// The writing end of `pipe`, taking `rate` Hz.
    pub(super) fn new(rate: u32, pipe: &SharedPipe) -> PipeSink {
        PipeSink {
            rate,
            pipe: pipe.clone(),
        }
    }
}

impl PipeSource {
    /// The reading end of `pipe`, giving `rate` Hz.
    pub(super) fn new(rate: u32, pipe: &SharedPipe) -> PipeSource {
        PipeSource {
            rate,
            pipe: pipe.clone(),
        }
    }
}
