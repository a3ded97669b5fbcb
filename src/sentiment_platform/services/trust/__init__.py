"""How far to trust the numbers on the user's own feed: the review queue that draws posts
for people to label, and the model's quality measured against those labels."""
