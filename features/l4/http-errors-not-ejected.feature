Feature: ztunnel's outlier detection is L4 only: HTTP errors do not eject a backend
  Seed 001: "This outlier detection is still L4 only; the ztunnel does not use HTTP status codes."
  A backend that answers HTTP 500 keeps its round-robin share (exact counts, false-alarm rate 0).

  Background:
    Given the guide's apps "in-ambient" and "client-in-ambient" are deployed
    And "in-ambient" is scaled to 3 replicas

  @L4-OD-1 @needs-app-faults
  Scenario: a pod answering HTTP 500 to every request still gets a third of the connections
    When the first "in-ambient" pod answers every request with HTTP 500
    And the client sends 12 requests to "http://in-ambient:8000/hostname"
    Then each of the 3 "in-ambient" replicas answered 4 requests
    And the first "in-ambient" pod answered its 4 requests with HTTP 500
