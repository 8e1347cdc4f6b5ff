//! Reads a Kubernetes resource quantity (`250m`, `1.5`, `128Mi`, `1e3`) as a whole number of
//! thousandths, the unit the HorizontalPodAutoscaler computes in (`MilliValue`), rounded up as
//! Kubernetes rounds it.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Why a quantity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{0:?} is not a quantity (expected a number with an optional suffix such as m, k, Mi)")]
    Malformed(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// The quantity in thousandths of its unit (`250m` → 250, `2` → 2000, `1Ki` → 1_024_000).
pub fn milli_value(quantity: &Quantity) -> Result<i64, QuantityError> {
    parse_milli(&quantity.0)
}

/// A quantity of thousandths, written back as Kubernetes would print a milli-value.
pub fn from_milli(milli: i64) -> Quantity {
    if milli % 1000 == 0 {
        Quantity((milli / 1000).to_string())
    } else {
        Quantity(format!("{milli}m"))
    }
}

fn parse_milli(text: &str) -> Result<i64, QuantityError> {
    let malformed = || QuantityError::Malformed(text.to_owned());
    let trimmed = text.trim();
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(malformed());
    }
    let scale = Scale::from_suffix(suffix).ok_or_else(malformed)?;
    let digits = format!("{whole}{fraction}");
    let mantissa: i128 = digits.parse().map_err(|_| malformed())?;
    let fraction_digits = i32::try_from(fraction.len()).map_err(|_| malformed())?;
    let magnitude = scale
        .milli_of(mantissa, fraction_digits)
        .ok_or_else(|| QuantityError::TooLarge(text.to_owned()))?;
    let signed = if negative { -magnitude } else { magnitude };
    i64::try_from(signed).map_err(|_| QuantityError::TooLarge(text.to_owned()))
}

/// A suffix as a power of two times a power of ten.
#[derive(Debug, Clone, Copy)]
struct Scale {
    power_of_two: u32,
    power_of_ten: i32,
}

impl Scale {
    fn from_suffix(suffix: &str) -> Option<Self> {
        let binary = |power_of_two| Scale {
            power_of_two,
            power_of_ten: 0,
        };
        let decimal = |power_of_ten| Scale {
            power_of_two: 0,
            power_of_ten,
        };
        Some(match suffix {
            "Ki" => binary(10),
            "Mi" => binary(20),
            "Gi" => binary(30),
            "Ti" => binary(40),
            "Pi" => binary(50),
            "Ei" => binary(60),
            "n" => decimal(-9),
            "u" => decimal(-6),
            "m" => decimal(-3),
            "" => decimal(0),
            "k" => decimal(3),
            "M" => decimal(6),
            "G" => decimal(9),
            "T" => decimal(12),
            "P" => decimal(15),
            "E" => decimal(18),
            exponent => {
                let power: i32 = exponent.strip_prefix(['e', 'E'])?.parse().ok()?;
                decimal(power)
            }
        })
    }

    /// `mantissa × 10^-fraction_digits × scale`, in thousandths, rounded up.
    fn milli_of(self, mantissa: i128, fraction_digits: i32) -> Option<i128> {
        let scaled = mantissa.checked_mul(1i128.checked_shl(self.power_of_two)?)?;
        let power_of_ten = self
            .power_of_ten
            .checked_add(3)?
            .checked_sub(fraction_digits)?;
        if power_of_ten >= 0 {
            scaled.checked_mul(10i128.checked_pow(power_of_ten.unsigned_abs())?)
        } else {
            let divisor = 10i128
                .checked_pow(power_of_ten.unsigned_abs())
                .unwrap_or(i128::MAX);
            Some(scaled.div_euclid(divisor) + i128::from(scaled.rem_euclid(divisor) != 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_kubernetes_writes() {
        let cases = [
            ("250m", 250),
            ("1", 1000),
            ("1.5", 1500),
            (".5", 500),
            ("100n", 1),
            ("0", 0),
            ("2k", 2_000_000),
            ("1Ki", 1_024_000),
            ("128Mi", 134_217_728_000),
            ("1e3", 1_000_000),
            ("5E-3", 5),
            ("-1", -1000),
            ("+3m", 3),
        ];
        for (text, milli) in cases {
            assert_eq!(parse_milli(text), Ok(milli), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for text in ["", "m", "abc", "1.2.3", "1Xi", "1e", "--1", "1 m"] {
            assert!(
                matches!(parse_milli(text), Err(QuantityError::Malformed(_))),
                "{text}"
            );
        }
        assert!(matches!(
            parse_milli("9Ei"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(
            parse_milli("1e400"),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn prints_milli_values_back() {
        assert_eq!(from_milli(2000).0, "2");
        assert_eq!(from_milli(1500).0, "1500m");
    }
}
