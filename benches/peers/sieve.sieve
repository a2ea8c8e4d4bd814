# Workload W1 for Dovecot LDA + Pigeonhole Sieve: the same decisions as peers/procmailrc.
# Fixed copy of ../../../shared/bench/peers/sieve.sieve (see BENCHMARKS.md): that file
# counts every matching rule as 1 and files into Junk at 5 matches, where procmailrc
# and mailfilter add the weights (2, 1 or 3) and file into Junk above 5. Here "s" gets
# one "1" per point of weight, and "0" + six "1"s (111111) > 11111 means a total above 5.
require ["fileinto", "regex", "variables", "relational", "comparator-i;ascii-numeric"];
if header :contains "X-Amavis-Alert" "INFECTED" { discard; stop; }
if anyof (header :is "X-Spam-Flag" "YES", header :is "X-Spam" "Yes") { fileinto "Junk"; stop; }
if header :regex "List-Id" "rust-users\\.lists\\.example\\.org" { fileinto "Lists.rust"; stop; }
set "s" "0";
if header :contains "Subject" "viagra" { set "s" "${s}11"; }
if header :contains "Subject" "casino" { set "s" "${s}11"; }
if header :contains "Subject" "winner" { set "s" "${s}11"; }
if header :contains "Subject" "loan" { set "s" "${s}11"; }
if header :contains "Subject" "free" { set "s" "${s}1"; }
if header :contains "Subject" "urgent" { set "s" "${s}1"; }
if header :contains "Subject" "offer" { set "s" "${s}1"; }
if header :contains "Subject" "click" { set "s" "${s}1"; }
if header :contains "Subject" "verify" { set "s" "${s}1"; }
if header :contains "Subject" "password" { set "s" "${s}1"; }
if header :contains "From" "cheap-meds.example" { set "s" "${s}111"; }
if header :contains "From" "bulk-sender.example" { set "s" "${s}111"; }
if header :contains "Received" "RDNS_NONE" { set "s" "${s}1"; }
if header :contains "Subject" "unsubscribe" { set "s" "${s}1"; }
if header :contains "Subject" "account" { set "s" "${s}1"; }
if header :contains "Subject" "!!!" { set "s" "${s}11"; }
if header :contains "Subject" "$$$" { set "s" "${s}11"; }
if header :contains "To" "undisclosed" { set "s" "${s}1"; }
if header :regex "Content-Type" "charset=.?gb2312" { set "s" "${s}11"; }
if header :contains "X-Mailer" "bulk" { set "s" "${s}11"; }
if string :value "gt" :comparator "i;ascii-numeric" "${s}" "11111" { fileinto "Junk"; stop; }
keep;
