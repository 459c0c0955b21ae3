#include "store/store_fault.h"

static const char *const labels[] = {
#define STORE_FAULT_LABEL(name, label, text) label,
	STORE_FAULT_MAP(STORE_FAULT_LABEL)
#undef STORE_FAULT_LABEL
};

static const char *const texts[] = {
#define STORE_FAULT_TEXT(name, label, text) text,
	STORE_FAULT_MAP(STORE_FAULT_TEXT)
#undef STORE_FAULT_TEXT
};

const char *store_fault_label(enum store_fault f)
{
	return (unsigned)f < STORE_FAULT_COUNT ? labels[f] : "unknown";
}

const char *store_fault_text(enum store_fault f)
{
	return (unsigned)f < STORE_FAULT_COUNT ? texts[f] : "unknown";
}

void store_health_add(struct store_health *sum, const struct store_health *h)
{
	if (sum->fault == STORE_FAULT_NONE)
		sum->fault = h->fault;
	for (int i = 0; i < STORE_FAULT_COUNT; i++)
		sum->write_failures[i] += h->write_failures[i];
	for (int i = 0; i < STORE_SHED_COUNT; i++)
		sum->shed[i] += h->shed[i];
}

const char *store_shed_label(enum store_shed s)
{
	static const char *const shed_labels[] = {
#define STORE_SHED_LABEL(name, label) label,
		STORE_SHED_MAP(STORE_SHED_LABEL)
#undef STORE_SHED_LABEL
	};

	return (unsigned)s < STORE_SHED_COUNT ? shed_labels[s] : "unknown";
}
