#ifndef CTA_BASELINE_H
#define CTA_BASELINE_H
/// Raw C baselines for cta-bench: the same work as the Swift clients, done with the C libraries directly.
int cta_baseline_linked(void);
#endif
