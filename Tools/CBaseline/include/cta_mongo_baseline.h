#ifndef CTA_MONGO_BASELINE_H
#define CTA_MONGO_BASELINE_H
int cta_mongo_baseline_linked(void);
#endif
