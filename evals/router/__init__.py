"""Router eval: split, train, bench and score the local intent classifier."""
