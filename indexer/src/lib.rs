//! Chain follower -> SQL -> REST API + worker feed: skeleton.
