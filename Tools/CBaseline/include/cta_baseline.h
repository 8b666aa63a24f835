#ifndef CTA_BASELINE_H
#define CTA_BASELINE_H
/// Raw C baselines for cta-bench: the same work as CTA's Swift clients, done with the C libraries directly,
/// in the same process and the same run, so figures can be reported as ratios on a noisy machine.
#include "cta_amqp_baseline.h"
#include "cta_mongo_baseline.h"
#endif
