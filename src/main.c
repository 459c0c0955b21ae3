#include <stdio.h>

#include "core/log.h"

int main(void)
{
	log_info("main", "meshnode %s", MESHNODE_VERSION);
	return 0;
}
