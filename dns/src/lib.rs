//! The mvdns DNS server (built in the DNS server issue).
