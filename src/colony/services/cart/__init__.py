"""Cart: each buyer's cart. Available first: it answers with what it has when others are down."""
