//! Memory budgets of fits, as pure functions: what a fit over its gathered
//! inputs needs on its worker, and whether a worker (or a queue's workers) can
//! give it. A fit no worker and no queue can take fails its run before its
//! inputs are sent anywhere; one that some can take goes only to those.

/// What a fit over `input_bytes` of gathered inputs needs on its worker: the
/// inputs as received and decoded plus the fit's own working memory, `factor`
/// times the inputs ([`crate::RuntimeConfig::fit_memory_factor`]).
pub fn fit_need(input_bytes: u64, factor: f64) -> u64 {
    (input_bytes as f64 * factor.max(1.0)).ceil() as u64
}

/// Whether a worker that may use `budget` bytes (`None`: unknown, or a thread
/// of the scheduler's process, where the inputs already are) can take a fit
/// needing `need`.
pub fn can_take(need: u64, budget: Option<u64>) -> bool {
    budget.is_none_or(|b| need <= b)
}

/// Whether any of the workers and queues that could run a fit can take one
/// needing `need`; else the largest budget among them. With no candidate at
/// all the answer is yes: whether anything can run the fit is decided elsewhere.
pub fn check(need: u64, budgets: impl IntoIterator<Item = Option<u64>>) -> Result<(), u64> {
    let mut largest = None;
    for b in budgets {
        if can_take(need, b) {
            return Ok(());
        }
        largest = largest.max(b);
    }
    largest.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fit_needs_its_inputs_times_the_factor_and_never_less_than_them() {
        assert_eq!(fit_need(1000, 3.0), 3000);
        assert_eq!(fit_need(1000, 0.5), 1000);
        assert_eq!(fit_need(0, 3.0), 0);
    }

    #[test]
    fn an_unknown_budget_takes_anything() {
        assert!(can_take(u64::MAX, None));
        assert!(can_take(10, Some(10)));
        assert!(!can_take(11, Some(10)));
    }

    #[test]
    fn the_check_names_the_largest_budget_when_none_suffices() {
        assert_eq!(check(100, [Some(10), Some(50), Some(20)]), Err(50));
        assert_eq!(check(100, [Some(10), Some(100)]), Ok(()));
        assert_eq!(check(100, [Some(10), None]), Ok(()));
        assert_eq!(check(100, []), Ok(()));
    }
}
