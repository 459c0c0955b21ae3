module meshnode/bench/goref

go 1.19
