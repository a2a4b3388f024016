//! Demand forecasting per SKU and stock point, period by period (a period is whatever the
//! caller buckets demand into, typically a day or a week).
//!
//! * [`classify`]: Syntetos–Boylan–Croston classes from ADI (average demand interval) and CV²
//!   (squared coefficient of variation of the non-zero demand sizes), cut-offs 1.32 and 0.49.
//! * [`ses`]: simple exponential smoothing, for smooth and erratic demand.
//! * [`sba`]: the Syntetos–Boylan approximation: Croston's separate smoothing of sizes and
//!   intervals, times (1 − α/2) to remove Croston's upward bias; for intermittent and lumpy
//!   demand, where SES chases the zeros.
//! * [`forecast`]: classify, then the method the class calls for.
//! * [`reorder_point`], [`mase`], [`mean_error`], [`relative_bias`]: planning and accuracy.
//!
//! Floating point is fine here: forecasts are advice to a planner, never a position.

use serde::{Deserialize, Serialize};

/// ADI at or above this is intermittent (Syntetos, Boylan & Croston 2005).
pub const ADI_CUTOFF: f64 = 1.32;
/// CV² at or above this is erratic.
pub const CV2_CUTOFF: f64 = 0.49;
/// Periods of history one call accepts (27 years of days).
pub const PERIODS_MAX: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DemandClass {
    /// Regular, stable sizes.
    Smooth,
    /// Regular, variable sizes.
    Erratic,
    /// Sporadic, stable sizes.
    Intermittent,
    /// Sporadic, variable sizes.
    Lumpy,
}

#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
pub struct DemandProfile {
    pub class: DemandClass,
    /// Periods per non-zero demand.
    pub adi: f64,
    /// Squared coefficient of variation of non-zero demand sizes.
    pub cv2: f64,
    pub periods: usize,
    pub demand_periods: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForecastMethod {
    Ses,
    Sba,
}

#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
pub struct ForecastOptions {
    /// Smoothing constant, 0 < α ≤ 1; 0.1–0.3 is usual.
    pub alpha: f64,
}

impl Default for ForecastOptions {
    fn default() -> ForecastOptions {
        ForecastOptions { alpha: 0.1 }
    }
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Forecast {
    pub profile: DemandProfile,
    pub method: ForecastMethod,
    /// Expected demand per period from the end of the history on.
    pub per_period: f64,
    /// `fitted[t]` is the forecast for period `t` made from periods before `t` only, so it can
    /// be scored against `history[t]` without look-ahead.
    pub fitted: Vec<f64>,
    /// Root mean squared one-step error over the history, the σ a reorder point uses.
    pub rmse: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error("the history is empty or longer than {PERIODS_MAX} periods")]
    History,
    #[error("the history has no demand at all; there is nothing to forecast")]
    NoDemand,
    #[error("alpha must be in (0, 1], got {0}")]
    Alpha(f64),
    #[error("lead time and service factor must be finite and non-negative")]
    Planning,
}

fn check_history(history: &[u64]) -> Result<(), ForecastError> {
    if history.is_empty() || history.len() > PERIODS_MAX {
        return Err(ForecastError::History);
    }
    Ok(())
}

fn check_alpha(alpha: f64) -> Result<(), ForecastError> {
    if !(alpha > 0.0 && alpha <= 1.0) {
        return Err(ForecastError::Alpha(alpha));
    }
    Ok(())
}

/// ADI and CV² of `history`, and the class they put it in.
pub fn classify(history: &[u64]) -> Result<DemandProfile, ForecastError> {
    check_history(history)?;
    let sizes: Vec<f64> = history
        .iter()
        .filter(|&&d| d > 0)
        .map(|&d| d as f64)
        .collect();
    if sizes.is_empty() {
        return Err(ForecastError::NoDemand);
    }
    let adi = history.len() as f64 / sizes.len() as f64;
    let mean = sizes.iter().sum::<f64>() / sizes.len() as f64;
    let variance = sizes.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / sizes.len() as f64;
    let cv2 = variance / (mean * mean);
    let class = match (adi >= ADI_CUTOFF, cv2 >= CV2_CUTOFF) {
        (false, false) => DemandClass::Smooth,
        (false, true) => DemandClass::Erratic,
        (true, false) => DemandClass::Intermittent,
        (true, true) => DemandClass::Lumpy,
    };
    Ok(DemandProfile {
        class,
        adi,
        cv2,
        periods: history.len(),
        demand_periods: sizes.len(),
    })
}

/// Simple exponential smoothing: one-step forecasts for every period (the first is the first
/// observation, for lack of anything earlier) and the forecast after the last.
pub fn ses(history: &[u64], alpha: f64) -> Result<(Vec<f64>, f64), ForecastError> {
    check_history(history)?;
    check_alpha(alpha)?;
    let mut level = history[0] as f64;
    let mut fitted = Vec::with_capacity(history.len());
    for &demand in history {
        fitted.push(level);
        level += alpha * (demand as f64 - level);
    }
    Ok((fitted, level))
}

/// Syntetos–Boylan approximation. Sizes `z` and intervals `p` are smoothed only in periods with
/// demand; the forecast is (1 − α/2)·z/p. Before the first demand there is no estimate and
/// the forecast is 0.
pub fn sba(history: &[u64], alpha: f64) -> Result<(Vec<f64>, f64), ForecastError> {
    check_history(history)?;
    check_alpha(alpha)?;
    let correction = 1.0 - alpha / 2.0;
    // (size, interval) once the first demand is seen.
    let mut state: Option<(f64, f64)> = None;
    let mut since = 0u64;
    let mut fitted = Vec::with_capacity(history.len());
    let estimate = |state: Option<(f64, f64)>| state.map_or(0.0, |(z, p)| correction * z / p);
    for &demand in history {
        fitted.push(estimate(state));
        since += 1;
        if demand > 0 {
            let (d, q) = (demand as f64, since as f64);
            state = Some(match state {
                None => (d, q),
                Some((z, p)) => (z + alpha * (d - z), p + alpha * (q - p)),
            });
            since = 0;
        }
    }
    Ok((fitted, estimate(state)))
}

/// Classifies `history` and forecasts it with SES (smooth, erratic) or SBA (intermittent,
/// lumpy).
pub fn forecast(history: &[u64], options: &ForecastOptions) -> Result<Forecast, ForecastError> {
    let profile = classify(history)?;
    let method = match profile.class {
        DemandClass::Smooth | DemandClass::Erratic => ForecastMethod::Ses,
        DemandClass::Intermittent | DemandClass::Lumpy => ForecastMethod::Sba,
    };
    let (fitted, per_period) = match method {
        ForecastMethod::Ses => ses(history, options.alpha)?,
        ForecastMethod::Sba => sba(history, options.alpha)?,
    };
    let squared: f64 = history
        .iter()
        .zip(&fitted)
        .map(|(&a, f)| (a as f64 - f).powi(2))
        .sum();
    let rmse = (squared / history.len() as f64).sqrt();
    Ok(Forecast {
        profile,
        method,
        per_period,
        fitted,
        rmse,
    })
}

/// Reorder point: expected demand over the lead time plus safety stock,
/// `d·L + k·σ·√L`, with `σ` the one-step forecast error and `k` the service factor (1.65 for
/// about 95% cycle service under normal errors). Rounded up to whole units.
pub fn reorder_point(
    forecast: &Forecast,
    lead_time_periods: f64,
    service_factor: f64,
) -> Result<u64, ForecastError> {
    let valid = |v: f64| v.is_finite() && v >= 0.0;
    if !valid(lead_time_periods) || !valid(service_factor) {
        return Err(ForecastError::Planning);
    }
    let expected = forecast.per_period * lead_time_periods;
    let safety = service_factor * forecast.rmse * lead_time_periods.sqrt();
    // Float-to-int `as` saturates, so an absurd result cannot wrap.
    Ok((expected + safety).ceil() as u64)
}

/// Mean absolute scaled error: the forecast's mean absolute error over `actual`, divided by the
/// in-sample mean absolute error of the naive forecast (last period's demand) over `training`.
/// Below 1 beats naive. `None` if lengths differ, there is nothing to score, or the training
/// series is constant (the scale is zero).
pub fn mase(actual: &[u64], forecast: &[f64], training: &[u64]) -> Option<f64> {
    if actual.len() != forecast.len() || actual.is_empty() || training.len() < 2 {
        return None;
    }
    let scale = training
        .windows(2)
        .map(|w| w[1].abs_diff(w[0]) as f64)
        .sum::<f64>()
        / (training.len() - 1) as f64;
    if scale == 0.0 {
        return None;
    }
    let mae = actual
        .iter()
        .zip(forecast)
        .map(|(&a, f)| (a as f64 - f).abs())
        .sum::<f64>()
        / actual.len() as f64;
    Some(mae / scale)
}

/// Mean error, forecast − actual: positive means over-forecasting (too much stock).
pub fn mean_error(actual: &[u64], forecast: &[f64]) -> Option<f64> {
    if actual.len() != forecast.len() || actual.is_empty() {
        return None;
    }
    let sum: f64 = actual
        .iter()
        .zip(forecast)
        .map(|(&a, f)| f - a as f64)
        .sum();
    Some(sum / actual.len() as f64)
}

/// Total error over total demand: the mean error as a share of demand, comparable across SKUs.
pub fn relative_bias(actual: &[u64], forecast: &[f64]) -> Option<f64> {
    let total: u64 = actual.iter().sum();
    if total == 0 {
        return None;
    }
    mean_error(actual, forecast).map(|e| e * actual.len() as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_cut_offs() {
        let check = |history: &[u64], class| assert_eq!(classify(history).unwrap().class, class);
        check(&[10, 11, 9, 10, 12, 10], DemandClass::Smooth);
        check(&[1, 30, 2, 40, 1, 25], DemandClass::Erratic);
        check(&[0, 5, 0, 0, 5, 0, 6, 0], DemandClass::Intermittent);
        check(&[0, 1, 0, 0, 40, 0, 2, 0], DemandClass::Lumpy);
        let p = classify(&[0, 4, 0, 4]).unwrap();
        assert_eq!((p.adi, p.cv2), (2.0, 0.0));
    }

    #[test]
    fn no_history_or_no_demand_is_an_error() {
        assert_eq!(classify(&[]), Err(ForecastError::History));
        assert_eq!(classify(&[0, 0]), Err(ForecastError::NoDemand));
        assert_eq!(ses(&[1], 0.0), Err(ForecastError::Alpha(0.0)));
        assert!(ses(&[1], f64::NAN).is_err());
    }

    #[test]
    fn ses_follows_the_textbook_recursion() {
        let (fitted, next) = ses(&[10, 20, 10], 0.5).unwrap();
        assert_eq!(fitted, vec![10.0, 10.0, 15.0]);
        assert_eq!(next, 12.5);
    }

    #[test]
    fn sba_smooths_sizes_and_intervals_with_the_bias_correction() {
        // Demand 6 every 3rd period: z = 6, p = 3, forecast = (1 − 0.05)·2.
        let history = [0, 0, 6, 0, 0, 6, 0, 0, 6];
        let (fitted, next) = sba(&history, 0.1).unwrap();
        assert!((next - 0.95 * 2.0).abs() < 1e-12);
        assert_eq!(&fitted[..3], &[0.0, 0.0, 0.0]);
        let f = forecast(&history, &ForecastOptions::default()).unwrap();
        assert_eq!(f.method, ForecastMethod::Sba);
    }

    #[test]
    fn reorder_point_adds_safety_stock() {
        let f = forecast(&[10, 10, 10, 10], &ForecastOptions::default()).unwrap();
        assert_eq!(f.rmse, 0.0);
        assert_eq!(reorder_point(&f, 4.0, 1.65).unwrap(), 40);
        let g = forecast(&[8, 12, 8, 12], &ForecastOptions::default()).unwrap();
        assert!(reorder_point(&g, 4.0, 1.65).unwrap() > 40);
        assert_eq!(reorder_point(&g, -1.0, 1.65), Err(ForecastError::Planning));
    }

    #[test]
    fn accuracy_helpers() {
        // Naive in-sample MAE of [1, 3, 1] is 2; forecast error 1 → MASE 0.5.
        assert_eq!(mase(&[5, 5], &[4.0, 6.0], &[1, 3, 1]), Some(0.5));
        assert_eq!(mase(&[5], &[4.0], &[2, 2]), None);
        assert_eq!(mean_error(&[5, 5], &[6.0, 7.0]), Some(1.5));
        assert_eq!(relative_bias(&[5, 5], &[6.0, 7.0]), Some(0.3));
        assert_eq!(mean_error(&[1], &[]), None);
    }
}
