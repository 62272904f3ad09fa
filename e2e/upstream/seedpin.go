package upstream

// SeedClientSPKISHA256 pins the public key of the client certificate inline in
// the seed's "TCP with mTLS" example (subject CN=tcpbin.com-client, serial 42).
//
// We verify that certificate by public key, not by chain, on purpose: it
// expired on 2024-06-15 and was issued by tcpbin.com's private CA, which we do
// not have. Chain verification would refuse it; the pin accepts exactly that
// key and nothing else, which is what the real tcpbin.com:4244 does for the
// example. Derived with:
//
//	openssl x509 -in seed-client.crt -noout -pubkey | openssl pkey -pubin -outform der | sha256sum
//
// and checked against testdata/seed-client.crt by TestSeedPinMatchesSeedCert.
const SeedClientSPKISHA256 = "13b38d9857bdd27570d641df60ce616faa1ebc647b8ad46d0d5e4df3edf56c4d"
